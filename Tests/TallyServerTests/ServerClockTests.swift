import Foundation
import Testing

@testable import TallyServer

/// The clock quiz questions are timed by.
@Suite(.serialized) struct ServerClockTests {
    @Test func itNeverRunsBackwardsAndNeverStartsBehindTheLog() {
        // A box without a real-time clock booting an hour behind the newest event it logged.
        // Its own instance: other suites start servers (and the shared clock) in parallel.
        let clock = ServerClock()
        let newest = Date().addingTimeInterval(3600)
        clock.start(notBefore: newest)
        var previous = clock.now()
        #expect(previous >= newest)
        for _ in 0..<10_000 {
            let now = clock.now()
            #expect(now >= previous)
            previous = now
        }
        // Started normally, it is the wall clock (within a few milliseconds of the anchor's reading).
        clock.start(notBefore: Date().addingTimeInterval(-3600))
        #expect(abs(clock.now().timeIntervalSinceNow) < 0.5)
    }
}
