import Testing

@testable import TallyDiscovery

/// A small, seedable generator, so a failing fuzz case can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("TXT records")
struct TXTRecordTests {
    @Test func theAppliancesOwnRecordsReadBack() {
        let txt = TXTRecord.parse(["txtvers=1", "id=k3x9q2m8p4w7z5b1", "api=/api/v1", "events=/events", "path=/display", "version=0.1.0"])
        #expect(
            txt == [
                "txtvers": "1", "id": "k3x9q2m8p4w7z5b1", "api": "/api/v1", "events": "/events", "path": "/display", "version": "0.1.0",
            ])
    }

    @Test func oddEntriesGiveSaneResults() {
        #expect(TXTRecord.parse(["="]) == [:], "an empty key is ignored (it made `tally discover` trap)")
        #expect(TXTRecord.parse(["=x", "==", ""]) == [:])
        #expect(TXTRecord.parse([[UInt8]()]) == [:])
        #expect(TXTRecord.parse(["flag"]) == ["flag": ""], "a key without = is present, with no value")
        #expect(TXTRecord.parse(["id="]) == ["id": ""])
        #expect(TXTRecord.parse(["a=b=c"]) == ["a": "b=c"], "the value runs from the first =")
        #expect(TXTRecord.parse(["ID=one", "id=two", "Id=three"]) == ["id": "one"], "keys are case-insensitive; the first counts")
        #expect(TXTRecord.parse(["path=/x y"]) == ["path": "/x y"])
        #expect(TXTRecord.parse(["k\u{0}ey=1", "ké=1", "k\u{7F}=1"]) == [:], "keys are printable US-ASCII")
        #expect(TXTRecord.parse(["v=a\u{0}b"]) == ["v": "a\u{0}b"], "values are opaque")
    }

    @Test func aValueThatIsNotUTF8IsDroppedNotRepaired() {
        let bad: [UInt8] = Array("id=".utf8) + [0xFF, 0xFE]
        #expect(TXTRecord.parse([bad]) == [:])
        // …and it still was the first `id`: a later one does not take its place.
        #expect(TXTRecord.parse([bad, Array("id=genuine".utf8)]) == [:])
        #expect(TXTRecord.parse([Array("id=".utf8) + [0xC3]]) == [:], "a truncated sequence")
        #expect(TXTRecord.parse([Array("name=".utf8) + [0xC3, 0xA9]]) == ["name": "é"])
    }

    @Test func overLongEntriesAreIgnored() {
        let fits = "k=" + String(repeating: "v", count: 253)
        let over = "k=" + String(repeating: "v", count: 254)
        #expect(TXTRecord.parse([fits])["k"]?.count == 253)
        #expect(TXTRecord.parse([over]) == [:])
        #expect(TXTRecord.parse([String(repeating: "=", count: 100_000)]) == [:])
    }

    /// Random entries, biased towards the bytes that matter (`=`, ASCII, invalid UTF-8 lead
    /// bytes): parsing never traps, and every result is exactly what the rules say.
    @Test(arguments: 0..<8) func fuzzedEntriesNeverTrapAndFollowTheRules(seed: UInt64) {
        var rng = SplitMix64(state: seed &* 7919 &+ 1)
        let alphabet: [UInt8] = Array("=Idi=d=pat h".utf8) + [0x00, 0x7F, 0x80, 0xC3, 0xA9, 0xFF, 0xE2, 0x82, 0xAC]
        for _ in 0..<2_000 {
            let entries: [[UInt8]] = (0..<Int.random(in: 0...8, using: &rng)).map { _ in
                let length =
                    Int.random(in: 0...10, using: &rng) == 0 ? Int.random(in: 250...300, using: &rng) : Int.random(in: 0...12, using: &rng)
                return (0..<length).map { _ in
                    Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                }
            }
            let parsed = TXTRecord.parse(entries)
            #expect(parsed == reference(entries), "entries: \(entries)")
            for key in parsed.keys {
                #expect(!key.isEmpty && !key.contains("=") && key == key.lowercased())
                #expect(key.utf8.allSatisfy { (0x20...0x7E).contains($0) })
            }
        }
    }

    /// The rules, written as plainly as possible.
    private func reference(_ entries: [[UInt8]]) -> [String: String] {
        var result: [String: String] = [:]
        var firsts: Set<String> = []
        for entry in entries {
            guard entry.count <= 255 else { continue }
            let key = entry.prefix { $0 != UInt8(ascii: "=") }
            guard !key.isEmpty, key.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else { continue }
            let name = String(decoding: key, as: UTF8.self).lowercased()
            guard !firsts.contains(name) else { continue }
            firsts.insert(name)
            let value = Array(entry.dropFirst(key.count + 1))
            let text = String(decoding: value, as: UTF8.self)
            if Array(text.utf8) == value { result[name] = text }  // round-trips: valid UTF-8
        }
        return result
    }
}

@Suite("Choosing an appliance")
struct RosterTests {
    let hall = appliance("Tally main hall", id: "k3x9q2m8p4w7z5b1", port: 8080)
    let stage = appliance("Tally stage", id: "s7n2b5v8c1x4z6m3", port: 8081, host: "stage.local")

    @Test func theOnlyApplianceIsChosen() {
        #expect(Roster([hall]).choose(pinnedTo: nil) == .found(hall))
        #expect(Roster([]).choose(pinnedTo: nil) == .none)
    }

    @Test func oneApplianceOnTwoInterfacesIsStillOne() {
        let wired = appliance("Tally main hall", id: hall.id, address: "10.0.0.5", port: 8080)
        #expect(Roster([hall, wired]).choose(pinnedTo: nil) == .found(wired), "first by address")
        #expect(!Roster([hall, wired]).isContested(hall))
    }

    @Test func unpinnedSeveralAreNeverSettledByName() {
        let phone = appliance("AAA", id: "impostor00000000", address: "192.168.4.77", port: 80, host: "phone.local")
        guard case .several(let all) = Roster([hall, phone]).choose(pinnedTo: nil) else {
            Issue.record("expected several")
            return
        }
        #expect(Set(all.map(\.name)) == ["AAA", "Tally main hall"])
    }

    @Test func pinnedIgnoresEveryOtherAdvertiser() {
        let phone = appliance("AAA", id: "impostor00000000", address: "192.168.4.77", port: 80, host: "phone.local")
        let broken = DiscoveredAppliance(name: "Broken", host: "x.local", address: "192.168.4.9", port: 1, txt: [:])
        #expect(Roster([phone, broken, stage, hall]).choose(pinnedTo: hall.id) == .found(hall))
        #expect(Roster([phone, broken, stage]).choose(pinnedTo: hall.id) == .none)
    }

    @Test func aCopiedIdIsAnImpostorAndNothingIsChosen() {
        let copy = appliance("AAA", id: hall.id, address: "192.168.4.77", port: 80, host: "phone.local")
        let roster = Roster([hall, copy, stage])
        #expect(roster.choose(pinnedTo: hall.id) == .impostor(id: hall.id!, [copy, hall]))
        #expect(roster.isContested(hall) && roster.isContested(copy) && !roster.isContested(stage))
        #expect(roster.origins(of: hall.id!).count == 2)
        // Same host, another port or name: still another advertiser.
        let sameHost = appliance("Tally main hall (2)", id: hall.id, port: 9999)
        #expect(Roster([hall, sameHost]).choose(pinnedTo: hall.id) == .impostor(id: hall.id!, [hall, sameHost]))
    }

    @Test func advertisementsWithoutAWellFormedIdAreNotCandidates() {
        let noID = appliance("Broken", id: nil, port: 1)
        let badID = appliance("Odd", id: "no spaces/here", port: 2)
        #expect(noID.id == nil && badID.id == nil)
        #expect(Roster([noID, badID, hall]).choose(pinnedTo: nil) == .found(hall))
        #expect(ApplianceID.isWellFormed("k3x9q2m8p4w7z5b1") && ApplianceID.isWellFormed("A-b_9"))
        #expect(
            !ApplianceID.isWellFormed("") && !ApplianceID.isWellFormed(String(repeating: "a", count: 65)) && !ApplianceID.isWellFormed("é"))
    }

    @Test func theAdvertisedPathCannotMoveTheURLToAnotherHost() {
        #expect(hall.url == "http://192.168.4.1:8080/display")
        for path in ["@evil.example/", "//evil.example/", "evil", "/a b", "/\\evil.example", "/x\u{0}"] {
            #expect(appliance("X", id: "x", port: 80, path: path).url == "http://192.168.4.1:80/", "\(path)")
        }
        let v6 = DiscoveredAppliance(name: "v6", host: "h", address: "fe80::1", port: 80, txt: [:])
        #expect(v6.url == "http://[fe80::1]:80/")
    }
}

private func appliance(
    _ name: String, id: String?, address: String = "192.168.4.1", port: Int, host: String = "tally.local", path: String = "/display"
) -> DiscoveredAppliance {
    var txt = ["txtvers": "1", "path": path]
    if let id { txt["id"] = id }
    return DiscoveredAppliance(name: name, host: host, address: address, port: port, txt: txt)
}
