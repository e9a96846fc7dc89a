import Foundation
import Logging
import Synchronization
import TallyDomain
import Testing
@testable import TallyEventLog

private func temporaryDatabase() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tally-log-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("tally.sqlite").path
}

private let logger = Logger(label: "test")

private func created(_ id: SessionID) -> SessionEvent {
    .sessionCreated(.init(sessionId: id, title: "T \(id)", joinCode: JoinCode("ABCDEF")!))
}

private func ballot(_ participant: ParticipantID, _ option: OptionID = "o1") -> SessionEvent {
    .ballotCast(.init(pollId: "p", participantId: participant, optionIds: [option]))
}

@Suite("Event log")
struct EventLogTests {
    @Test func appendsAreNumberedInOrderAndReadBackAfterReopen() async throws {
        let path = temporaryDatabase()
        let epoch: String
        do {
            let log = try SQLiteEventLog(path: path, durability: .fsync, logger: logger)
            epoch = log.epoch
            let first = try log.append(sessionId: "a", events: [created("a")])
            let second = try log.append(sessionId: "a", events: [ballot("x"), ballot("y")])
            #expect(first.map(\.sequence) == [1])
            #expect(second.map(\.sequence) == [2, 3])
            try await log.waitUntilDurable(3)
            #expect(log.durableSequence == 3)
        }
        let reopened = try SQLiteEventLog(path: path, durability: .fsync, logger: logger)
        #expect(reopened.epoch == epoch, "the epoch belongs to the data directory, not the process")
        let all = try reopened.allEvents()
        #expect(all.map(\.sequence) == [1, 2, 3])
        #expect(all.map(\.event) == [created("a"), ballot("x"), ballot("y")])
        let next = try reopened.append(sessionId: "a", events: [ballot("z")])
        #expect(next[0].sequence == 4, "numbering continues after a restart")
    }

    @Test func replayReadsOneSessionBetweenBounds() async throws {
        let log = try SQLiteEventLog(path: temporaryDatabase(), durability: .os, logger: logger)
        _ = try log.append(sessionId: "a", events: [created("a")])
        _ = try log.append(sessionId: "b", events: [created("b")])
        _ = try log.append(sessionId: "a", events: [ballot("1"), ballot("2")])
        _ = try log.append(sessionId: "b", events: [ballot("3")])
        try await log.waitUntilDurable(5)
        #expect(try log.events(of: "a", after: 0, through: 5).map(\.sequence) == [1, 3, 4])
        #expect(try log.events(of: "a", after: 3, through: 5).map(\.sequence) == [4])
        #expect(try log.events(of: "a", after: 1, through: 3).map(\.sequence) == [3])
        #expect(try log.events(of: "b", after: 2, through: 4).isEmpty)
        #expect(try log.events(of: "a", after: 4, through: 4).isEmpty)
    }

    @Test func observersSeeEveryEventOnceInOrderAfterItIsDurable() async throws {
        let log = try SQLiteEventLog(path: temporaryDatabase(), durability: .fsync, logger: logger)
        let seen = Mutex<[UInt64]>([])
        let notDurableWhenSeen = Mutex(0)
        log.onDurable { batch in
            // Persist before broadcast: the observer only ever sees durable events.
            if batch.last!.sequence > log.durableSequence { notDurableWhenSeen.withLock { $0 += 1 } }
            seen.withLock { $0 += batch.map(\.sequence) }
        }
        let writers = 64
        let perWriter = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for i in 0..<perWriter {
                        let logged = try log.append(sessionId: "s\(w % 4)", events: [ballot("w\(w)-\(i)")])
                        try await log.waitUntilDurable(logged[0].sequence)
                    }
                }
            }
            try await group.waitForAll()
        }
        let total = UInt64(writers * perWriter)
        #expect(seen.withLock { $0 } == Array(1...total))
        #expect(notDurableWhenSeen.withLock { $0 } == 0)
        #expect(try log.allEvents().count == Int(total))
    }

    @Test func eventIdsRoundTripAndRejectJunk() {
        let id = EventID(epoch: "0a1b2c3d", sequence: 42)
        #expect(id.description == "0a1b2c3d-42")
        #expect(EventID("0a1b2c3d-42") == id)
        for junk in ["", "42", "-42", "zz-1", "0a1b-", "0a1b-x", "0a1b-1-2", String(repeating: "a", count: 80) + "-1"] {
            #expect(EventID(junk) == nil, "\(junk)")
        }
    }

    @Test func settingsPersist() throws {
        let path = temporaryDatabase()
        try SQLiteEventLog(path: path, durability: .os, logger: logger).setSetting("k", to: "v")
        #expect(try SQLiteEventLog(path: path, durability: .os, logger: logger).setting("k") == "v")
    }
}
