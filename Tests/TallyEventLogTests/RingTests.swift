import Foundation
import Logging
import Synchronization
import TallyDomain
import Testing

@testable import TallyEventLog

final class TestClock: Sendable {
    private let value = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { value.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLock { $0 += seconds } }
}

struct RingFixture {
    let directory: URL
    let path: String
    let clock = TestClock()
    var capacity = 1 << 20
    var retention: TimeInterval = 24 * 3600
    var durability: Durability = .os

    init() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-ring-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent("events.ring").path
    }

    func open(projectedThrough: UInt64 = UInt64.max / 2) throws -> RingEventLog {
        var options = RingEventLog.Options()
        options.capacity = capacity
        options.durability = durability
        options.retention = retention
        let clock = self.clock
        options.now = { clock.now }
        // By default pretend everything is projected, so the ring may overwrite freely.
        return try RingEventLog(
            path: path, options: options, projectedThrough: projectedThrough == UInt64.max / 2 ? 0 : projectedThrough,
            logger: Logger(label: "test"))
    }
}

func ballot(_ i: Int, padding: Int = 0) -> SessionEvent {
    .ballotCast(.init(pollId: "p", participantId: "v\(i)" + String(repeating: "x", count: padding), ballot: .choice(["o\(i % 3 + 1)"])))
}

extension RingEventLog {
    /// Appends and marks everything projected, so capacity (not backpressure) decides retention.
    @discardableResult
    func appendProjected(_ session: String, _ events: [SessionEvent]) throws -> [LoggedEvent] {
        let logged = try append(sessionId: session, events: events)
        markProjected(through: logged.last!.sequence)
        return logged
    }

    func retainedSequences() throws -> [UInt64] { try events(after: 0).map(\.sequence) }
}

@Suite("Ring file")
struct RingTests {
    @Test func recordsRoundTripThroughAReopen() async throws {
        let f = RingFixture()
        var written: [LoggedEvent] = []
        let epoch: String
        do {
            let log = try f.open()
            epoch = log.epoch
            written += try log.appendProjected("alpha", [ballot(1), ballot(2)])
            written += try log.appendProjected("beta", [.sessionEnded(.init(sessionId: "beta"))])
            written += try log.appendProjected("alpha", [ballot(3, padding: 300)])
            try await log.waitUntilDurable(written.last!.sequence)
            #expect(try log.events(after: 0) == written)
        }
        let reopened = try f.open()
        #expect(reopened.epoch == epoch && !reopened.created)
        #expect(try reopened.events(after: 0) == written)
        #expect(reopened.events(of: "alpha", after: 0, through: 4)?.map(\.sequence) == [1, 2, 4])
        #expect(reopened.events(of: "beta", after: 0, through: 4)?.map(\.sequence) == [3])
        let next = try reopened.append(sessionId: "alpha", events: [ballot(4)])
        #expect(next[0].sequence == 5, "numbering continues after the newest record")
    }

    @Test func theFileIsPreallocatedNotSparse() throws {
        let f = RingFixture()
        _ = try f.open()
        var info = stat()
        #expect(stat(f.path, &info) == 0)
        #expect(Int(info.st_size) == RingFile.headerSize + f.capacity)
        #expect(Int(info.st_blocks) * 512 >= f.capacity, "every block allocated up front")
    }

    @Test func wrappingKeepsTheNewestEventsInOrder() throws {
        let f = RingFixture()
        let log = try f.open()
        var last: UInt64 = 0
        for i in 0..<12_000 {  // ~160 bytes each: several laps of a 1 MiB ring
            last = try log.appendProjected("s", [ballot(i, padding: i % 97)])[0].sequence
        }
        let retained = try log.retainedSequences()
        #expect(retained.last == last)
        #expect(retained.first! > 1, "the oldest were overwritten")
        #expect(retained == Array(retained.first!...last), "contiguous, in order")
        #expect(log.reach().limitedByCapacity)
        #expect(log.events(of: "s", after: 0, through: last) == nil, "an overwritten position cannot be served")
        #expect(log.events(of: "s", after: retained.first! - 1, through: last)?.count == retained.count)
        #expect(log.events(of: "s", after: retained.first! - 2, through: last) == nil, "one before the edge is gone")
        #expect(log.events(of: "s", after: last, through: last)?.isEmpty == true)

        let reopened = try f.open()
        #expect(try reopened.retainedSequences() == retained, "recovery finds the same records after wraps")
        #expect(try reopened.append(sessionId: "s", events: [ballot(0)])[0].sequence == last + 1)
    }

    @Test func aCorruptByteCostsOnlyTheRecordItTouches() throws {
        let f = RingFixture()
        do {
            let log = try f.open()
            for i in 1...100 { try log.appendProjected("s", [ballot(i)]) }
        }
        let victim: RingFile.Slot
        do {
            let file = try RingFile.openExisting(path: f.path)
            file.recover()
            victim = file.slots[49]
            file.withDataRegion { $0[victim.offset + RingFile.recordHeaderSize + 3] ^= 0xFF }
        }
        let log = try f.open()
        let retained = try log.retainedSequences()
        let expected: [UInt64] = (1...100).map { UInt64($0) }.filter { $0 != victim.sequence }
        #expect(retained == expected)
        #expect(log.recoveryGaps == [victim.sequence...victim.sequence])
        #expect(log.events(of: "s", after: 10, through: 100) == nil, "a replay across the damage is refused (stream.reset)")
        #expect(log.events(of: "s", after: victim.sequence, through: 100)?.count == 100 - Int(victim.sequence))
    }

    @Test func garbageInTheMiddleIsSkipped() throws {
        let f = RingFixture()
        do {
            let log = try f.open()
            for i in 1...400 { try log.appendProjected("s", [ballot(i)]) }
        }
        var rng = SystemRandomNumberGenerator()
        do {
            let file = try RingFile.openExisting(path: f.path)
            file.withDataRegion { region in
                for i in 20_000..<24_000 { region[i] = UInt8.random(in: 0...255, using: &rng) }
            }
        }
        let retained = try f.open().retainedSequences()
        #expect(retained.count >= 400 - 40 && retained.count < 400)
        #expect(retained.first == 1 && retained.last == 400)
        #expect(retained == retained.sorted())
    }

    @Test func aTornLastWriteIsDroppedAndOverwritten() throws {
        let f = RingFixture()
        do {
            let log = try f.open()
            for i in 1...10 { try log.appendProjected("s", [ballot(i)]) }
        }
        do {
            let file = try RingFile.openExisting(path: f.path)
            file.recover()
            let last = file.slots.last!
            // A crash in the middle of copying the last record: its tail never arrived.
            file.withDataRegion { region in
                for i in (last.offset + 40)..<(last.offset + last.size) { region[i] = 0 }
            }
        }
        let log = try f.open()
        #expect(try log.retainedSequences() == Array(1...9))
        #expect(try log.append(sessionId: "s", events: [ballot(99)])[0].sequence == 10, "appending carries on after the last good record")
        let again = try f.open()
        #expect(try again.retainedSequences() == Array(1...10))
    }

    @Test func aDamagedHeaderIsRefusedWithAMessage() throws {
        let f = RingFixture()
        _ = try f.open()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: f.path))
        try handle.seek(toOffset: 30)
        try handle.write(contentsOf: Data([1, 2, 3]))
        try handle.close()
        #expect {
            try f.open()
        } throws: { error in
            "\(error)".contains("is not a Tally event ring")
        }
    }

    @Test func retentionByAgeHidesOldEventsButKeepsThem() throws {
        var f = RingFixture()
        f.retention = 3600
        let log = try f.open()
        for i in 1...3 { try log.appendProjected("s", [ballot(i)]) }
        f.clock.advance(1800)
        for i in 4...6 { try log.appendProjected("s", [ballot(i)]) }
        #expect(log.events(of: "s", after: 0, through: 6)?.count == 6)
        f.clock.advance(2400)  // the first three are now 70 minutes old
        #expect(log.events(of: "s", after: 0, through: 6) == nil)
        #expect(log.events(of: "s", after: 3, through: 6)?.map(\.sequence) == [4, 5, 6])
        #expect(log.reach().oldestSequence == 4)
        #expect(try log.retainedSequences().count == 6, "age hides events from replay; only capacity overwrites")
        #expect(!log.reach().limitedByCapacity)
    }

    @Test func clockJumpsNeitherEraseNorReorder() throws {
        var f = RingFixture()
        f.retention = 3600
        let log = try f.open()
        for i in 1...3 { try log.appendProjected("s", [ballot(i)]) }
        f.clock.advance(-86_400)  // the clock jumps back a day (no RTC, wrong time at boot)
        let back = try log.appendProjected("s", [ballot(4)])
        #expect(back[0].sequence == 4)
        let all = try log.events(after: 0)
        #expect(all.map(\.sequence) == [1, 2, 3, 4])
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp }, "timestamps never go backwards")
        #expect(log.events(of: "s", after: 0, through: 4)?.count == 4, "nothing hidden by a backwards jump")
        f.clock.advance(86_400 + 365 * 86_400)  // then a year forwards
        #expect(log.events(of: "s", after: 0, through: 4) == nil, "too old to replay at this time…")
        #expect(try log.retainedSequences() == [1, 2, 3, 4], "…but still in the ring")
        f.clock.advance(-365 * 86_400)  // the clock is corrected
        #expect(log.events(of: "s", after: 0, through: 4)?.count == 4, "and served again")
    }

    @Test func theRingNeverOverwritesWhatTheProjectionLacks() throws {
        let f = RingFixture()
        let log = try f.open(projectedThrough: 0)
        var appended = 0
        var refused = false
        for i in 0..<20_000 {
            do {
                try log.append(sessionId: "s", events: [ballot(i, padding: 100)])
                appended += 1
            } catch EventLogError.busy {
                refused = true
                break
            }
        }
        #expect(refused, "a full ring of unprojected events pushes back instead of losing them")
        #expect(try log.retainedSequences() == Array(1...UInt64(appended)))
        log.markProjected(through: UInt64(appended))
        #expect(throws: Never.self) { try log.append(sessionId: "s", events: [ballot(0)]) }
    }

    @Test func recordsTooLargeForTheRingAreRefused() throws {
        let f = RingFixture()
        let log = try f.open()
        #expect(throws: EventLogError.self) {
            try log.append(sessionId: "s", events: [ballot(1, padding: 300_000)])
        }
    }

    @Test func fsyncDurabilityAcknowledgesAfterTheSync() async throws {
        var f = RingFixture()
        f.durability = .fsync
        let log = try f.open()
        let seen = Mutex<[UInt64]>([])
        log.onDurable { batch in seen.withLock { $0 += batch.map(\.sequence) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<16 {
                group.addTask {
                    for i in 0..<10 {
                        let logged = try log.appendProjected("s\(w)", [ballot(i)])
                        try await log.waitUntilDurable(logged[0].sequence)
                        #expect(log.durableSequence >= logged[0].sequence)
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(seen.withLock { $0 } == Array(1...160), "observers see every event once, in order")
    }
}

@Suite("Ring crash property")
struct RingCrashPropertyTests {
    /// Random batches of appends; after each, a simulated crash tears the batch at a random byte
    /// (bytes after it keep their old contents) and the ring is reopened. Every record read back
    /// must be one that was written, in order, and everything before the torn batch survives.
    @Test(arguments: [1, 2, 3, 4, 5])
    func tornBatchesNeverCorruptWhatCameBefore(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let f = RingFixture()
        var written: [UInt64: SessionEvent] = [:]
        var survivedThrough: UInt64 = 0
        for _ in 0..<25 {
            let log = try f.open()
            let before = try RingFile.openExisting(path: f.path).withDataRegion { Array($0) }
            let count = Int.random(in: 1...60, using: &rng)
            var batch: [LoggedEvent] = []
            for _ in 0..<count {
                let event = ballot(Int.random(in: 0...1000, using: &rng), padding: Int.random(in: 0...400, using: &rng))
                batch += try log.appendProjected("s", [event])
            }
            for e in batch { written[e.sequence] = e.event }
            let after = try RingFile.openExisting(path: f.path).withDataRegion { Array($0) }
            // Find the bytes this batch changed and keep only a random prefix of them.
            let changed = after.indices.filter { after[$0] != before[$0] }
            if !changed.isEmpty, Bool.random(using: &rng) {
                let cut = changed[Int.random(in: 0..<changed.count, using: &rng)]
                let file = try RingFile.openExisting(path: f.path)
                file.withDataRegion { region in for i in changed where i >= cut { region[i] = before[i] } }
            } else {
                survivedThrough = batch.last!.sequence
            }
            let reopened = try f.open()
            let back = try reopened.events(after: 0)
            #expect(back.map(\.sequence) == back.map(\.sequence).sorted())
            for e in back { #expect(written[e.sequence] == e.event, "record \(e.sequence) is one that was written") }
            if let oldest = back.first?.sequence, survivedThrough >= oldest {
                #expect(back.contains { $0.sequence == survivedThrough }, "everything before the torn batch survives")
            }
            // The torn part is gone: forget what was not read back, as the writer would.
            let maxBack = back.last?.sequence ?? 0
            for s in written.keys where s > maxBack { written[s] = nil }
            survivedThrough = min(survivedThrough, maxBack)
        }
    }
}

struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

@Suite("Event ids")
struct EventIDTests {
    @Test func eventIdsRoundTripAndRejectJunk() {
        let id = EventID(epoch: "0a1b2c3d4e5f", sequence: 42)
        #expect(id.description == "0a1b2c3d4e5f-42")
        #expect(EventID("0a1b2c3d4e5f-42") == id)
        for junk in ["", "42", "-42", "zz-1", "0a1b-", "0a1b-x", "0a1b-1-2", String(repeating: "a", count: 80) + "-1"] {
            #expect(EventID(junk) == nil, "\(junk)")
        }
    }

    @Test func everyNewRingHasItsOwnEpoch() throws {
        let a = try RingFixture().open()
        let b = try RingFixture().open()
        #expect(a.epoch != b.epoch)
        #expect(a.epoch.count == 12)
    }
}
