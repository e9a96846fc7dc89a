import Foundation
import TallyDomain
import Testing

@testable import TallyServer

/// A session where participant "alice" votes in two polls and "bob" in the first.
private func twoPollsOneVoter() throws -> SessionState {
    var rng = SystemRandomNumberGenerator()
    let created = try SessionState.create(id: "s1", title: "All hands", joinCode: JoinCode.random(using: &rng))
    var state = SessionState(created: created)
    func run(_ command: SessionCommand) throws {
        for event in try state.decide(command, now: Date(timeIntervalSince1970: 1_800_000_000)) { state.apply(event) }
    }
    try run(.join("alice"))
    try run(.join("bob"))
    try run(.createPoll(.init(pollId: "p1", question: "Lunch?", options: ["Yes", "No"], kind: .single, openImmediately: true)))
    try run(.vote(participant: "alice", poll: "p1", ballot: .options(["o1"])))
    try run(.vote(participant: "bob", poll: "p1", ballot: .options(["o2"])))
    try run(.createPoll(.init(pollId: "p2", question: "Coffee?", options: ["Yes", "No"], kind: .single, openImmediately: true)))
    try run(.vote(participant: "alice", poll: "p2", ballot: .options(["o2"])))
    return state
}

/// poll id → participant field of each ballot, from the JSON export.
private func participants(_ data: Data) throws -> (scope: String, byPoll: [String: [String]]) {
    let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    var byPoll: [String: [String]] = [:]
    for poll in try #require(document["polls"] as? [[String: Any]]) {
        let id = try #require((poll["poll"] as? [String: Any])?["id"] as? String)
        byPoll[id] = try #require(poll["ballots"] as? [[String: Any]]).compactMap { $0["participant"] as? String }
    }
    return (try #require(document["participantPseudonyms"] as? String), byPoll)
}

@Suite("Export pseudonyms")
struct ExportPseudonymTests {
    let credentials = Credentials(secret: Array(repeating: 7, count: 32))

    @Test func oneVoterCannotBeFollowedAcrossPollsByDefault() throws {
        let state = try twoPollsOneVoter()
        let export = try participants(SessionExport.json(state, pseudonyms: credentials.pseudonyms(.perPoll)))
        #expect(export.scope == "perPoll")
        let first = try #require(export.byPoll["p1"]), second = try #require(export.byPoll["p2"])
        #expect(first.count == 2 && second.count == 1)
        #expect(Set(first).count == 2, "two people in one poll stay two")
        #expect(!first.contains(second[0]), "alice in poll 2 matches nobody in poll 1")
        for name in first + second {
            #expect(name != "alice" && name != "bob" && !name.contains("alice"))
            #expect(name.count == 12, "9 bytes of HMAC, base64url")
        }
    }

    @Test func linkingGivesOnePseudonymPerPersonStillNotTheirId() throws {
        let state = try twoPollsOneVoter()
        let export = try participants(SessionExport.json(state, pseudonyms: credentials.pseudonyms(.linked)))
        #expect(export.scope == "linked")
        let first = try #require(export.byPoll["p1"]), second = try #require(export.byPoll["p2"])
        #expect(first.contains(second[0]), "alice's two ballots carry the same name")
        #expect(Set(first).count == 2)
        let perPoll = try participants(SessionExport.json(state, pseudonyms: credentials.pseudonyms(.perPoll)))
        #expect(Set(first + second).isDisjoint(with: Set(perPoll.byPoll.values.joined())), "linked names differ from per-poll names")
        #expect(!(first + second).contains("alice"))
    }

    @Test func onlyTheAppliancesSecretProducesThePseudonyms() throws {
        let state = try twoPollsOneVoter()
        let ours = try participants(SessionExport.json(state, pseudonyms: credentials.pseudonyms(.perPoll)))
        let again = try participants(
            SessionExport.json(state, pseudonyms: Credentials(secret: Array(repeating: 7, count: 32)).pseudonyms(.perPoll)))
        let other = try participants(
            SessionExport.json(state, pseudonyms: Credentials(secret: Array(repeating: 8, count: 32)).pseudonyms(.perPoll)))
        #expect(ours.byPoll == again.byPoll, "the server and `tally export` agree")
        #expect(Set(ours.byPoll.values.joined()).isDisjoint(with: Set(other.byPoll.values.joined())))
    }
}

@Suite("Data directory")
struct DataDirectoryTests {
    @Test func aDirectoryLeftReadableIsRepairedButLinksAreNotFollowed() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tally-private-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = root + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let outside = root + "/elsewhere.txt"
        _ = FileManager.default.createFile(atPath: outside, contents: Data(), attributes: [.posixPermissions: 0o644])
        _ = FileManager.default.createFile(atPath: data + "/tally.sqlite", contents: Data(), attributes: [.posixPermissions: 0o644])
        _ = FileManager.default.createFile(atPath: data + "/events.ring", contents: Data(), attributes: [.posixPermissions: 0o600])
        try FileManager.default.createSymbolicLink(atPath: data + "/link", withDestinationPath: outside)
        // As an older version under umask 022 left them (chmod: whatever this process's umask is).
        for (path, mode) in [(data, 0o755), (outside, 0o644), (data + "/tally.sqlite", 0o644), (data + "/events.ring", 0o600)] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }

        let changes = try DataDirectory.makePrivate(data, create: false)
        func mode(_ path: String) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        }
        #expect(try mode(data) == 0o700)
        #expect(try mode(data + "/tally.sqlite") == 0o600)
        #expect(try mode(data + "/events.ring") == 0o600)
        #expect(try mode(outside) == 0o644, "a link's target is not ours")
        #expect(changes.map { ($0.path as NSString).lastPathComponent } == ["data", "tally.sqlite"], "only what changed is reported")
        #expect(try DataDirectory.makePrivate(data, create: false).isEmpty, "a second pass has nothing to do")
    }

    @Test func aMissingDirectoryIsCreatedPrivateOnlyWhenAsked() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tally-new-\(UUID().uuidString)/data").path
        defer { try? FileManager.default.removeItem(atPath: (data as NSString).deletingLastPathComponent) }
        #expect(throws: DataDirectory.Failure.self) { try DataDirectory.makePrivate(data, create: false) }
        try DataDirectory.makePrivate(data, create: true)
        #expect(try FileManager.default.attributesOfItem(atPath: data)[.posixPermissions] as? Int == 0o700)
    }
}
