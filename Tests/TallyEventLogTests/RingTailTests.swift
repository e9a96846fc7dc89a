import Foundation
import Testing

@testable import TallyEventLog

/// A backup reads the committed tail of a ring the server is still writing.
@Suite("Ring tail, read from outside")
struct RingTailTests {
    @Test func theTailAfterAPointIsEveryCommittedEventInOrder() async throws {
        let f = RingFixture()
        let log = try f.open(projectedThrough: 0)
        var last: UInt64 = 0
        for i in 0..<50 { last = try log.append(sessionId: "s\(i % 3)", events: [ballot(i)])[0].sequence }
        try await log.waitUntilDurable(last)
        let before = try Data(contentsOf: URL(fileURLWithPath: f.path))

        let tail = try RingEventLog.committedTail(ringAt: f.path, after: 10)
        #expect(tail.complete)
        #expect(tail.events == (try log.events(after: 10)), "the same events, decoded the same, across sessions")
        #expect(tail.events.map(\.sequence) == Array(11...last))
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.path)) == before, "reading never writes the ring")

        let nothing = try RingEventLog.committedTail(ringAt: f.path, after: last)
        #expect(nothing.complete && nothing.events.isEmpty, "nothing newer: complete and empty")
    }

    @Test func aTailTheRingNoLongerHoldsIsReportedIncomplete() throws {
        let f = RingFixture()
        let log = try f.open()
        for i in 0..<12_000 { try log.appendProjected("s", [ballot(i, padding: i % 97)]) }
        let oldest = try log.retainedSequences().first!
        let gone = try RingEventLog.committedTail(ringAt: f.path, after: 0)
        #expect(!gone.complete && gone.events.isEmpty, "the events right after 0 were overwritten: start again from a newer copy")
        let kept = try RingEventLog.committedTail(ringAt: f.path, after: oldest - 1)
        #expect(kept.complete && kept.events.first?.sequence == oldest)
    }

    @Test func noRingMeansNothingToAdd() throws {
        let tail = try RingEventLog.committedTail(ringAt: "/nonexistent/events.ring", after: 7)
        #expect(tail.complete && tail.events.isEmpty)
    }
}
