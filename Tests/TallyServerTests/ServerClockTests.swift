import Foundation
import Testing

@testable import TallyServer

/// The clock quiz questions are timed by.
@Suite(.serialized) struct ServerClockTests {
    @Test func itNeverRunsBackwardsAndNeverStartsBehindTheLog() {
        // A box without a real-time clock booting an hour behind the newest event it logged.
        let newest = Date().addingTimeInterval(3600)
        ServerClock.start(notBefore: newest)
        defer { ServerClock.start(notBefore: nil) }
        var previous = ServerClock.now()
        #expect(previous >= newest)
        for _ in 0..<10_000 {
            let now = ServerClock.now()
            #expect(now >= previous)
            previous = now
        }
        // Started normally, it is the wall clock (within a few milliseconds of the anchor's reading).
        ServerClock.start(notBefore: Date().addingTimeInterval(-3600))
        #expect(abs(ServerClock.now().timeIntervalSinceNow) < 0.5)
    }
}
