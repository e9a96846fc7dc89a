import Foundation
import Logging
import ServiceLifecycle
import TallyDomain
import TallyEventLog
import Testing

@testable import TallyServer

/// A venue on a real event ring in a temporary directory.
struct TestVenue {
    let log: RingEventLog
    let venue: Venue

    init(resultsInterval: Duration = .milliseconds(50)) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-venue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var options = RingEventLog.Options()
        options.capacity = 1 << 20
        options.durability = .os
        log = try RingEventLog(
            path: directory.appendingPathComponent("events.ring").path, options: options, projectedThrough: 0,
            logger: Logger(label: "test"))
        venue = Venue(writer: .embedded(log), limits: SessionLimits(), maxSessions: 100, resultsInterval: resultsInterval)
    }

    /// A session with one open poll ("p1": o1, o2) and one joined participant ("ada").
    func sessionWithOpenPoll() async throws -> LiveSession {
        let (session, _) = try await venue.createSession(title: "All hands")
        _ = try session.execute(
            .createPoll(.init(pollId: "p1", question: "Ship it?", options: ["Yes", "No"], kind: .single, openImmediately: true)))
        _ = try session.execute(.join("ada"))
        return session
    }

    /// The ballot count of the latest `poll.results` of `poll` in the log.
    func lastPublishedTotal(_ session: LiveSession, poll: PollID) -> Int? {
        let events = log.events(of: session.id, after: 0, through: UInt64.max) ?? []
        return events.reversed().lazy.compactMap { logged -> Int? in
            guard case .pollResults(let published) = logged.event, published.results.pollId == poll else { return nil }
            return published.results.totalBallots
        }.first
    }
}

@Suite("One command path")
struct CommandPathTests {
    /// Creation is a command like any other: its event is in the log and the state follows it.
    @Test func creatingASessionGoesThroughTheLog() async throws {
        let test = try TestVenue()
        let (session, created) = try await test.venue.createSession(title: "  All hands ")
        guard case .sessionCreated(let event) = created.last.event else {
            Issue.record("expected session.created, got \(created.last.event)")
            return
        }
        #expect(event.title == "All hands")
        #expect(session.read { state, last in (state.title, last) } == ("All hands", created.last.sequence))
        #expect(test.venue.session(joinCode: event.joinCode) === session)
        await #expect(throws: CommandFailure.self) { try await test.venue.createSession(title: " ") }
        #expect(test.venue.sessionCount == 1, "a refused creation registers nothing")
    }

    /// A phone that retries its first vote (or taps twice) gets exactly one "new ballot": the
    /// answer comes from the session's single writer, not from a read before it.
    @Test func ofManyRacingFirstBallotsExactlyOneIsNew() async throws {
        let test = try TestVenue()
        for round in 0..<20 {
            let session = try await test.sessionWithOpenPoll()
            let pollId = "p1"
            let outcomes = await withTaskGroup(of: Bool?.self) { group in
                for i in 0..<16 {
                    group.addTask {
                        try? session.execute(.vote(participant: "ada", poll: pollId, ballot: .options([i % 2 == 0 ? "o1" : "o2"])))
                            .replacedBallot
                    }
                }
                return await group.reduce(into: [Bool?]()) { $0.append($1) }
            }
            #expect(outcomes.allSatisfy { $0 != nil }, "round \(round): every ballot is accepted")
            #expect(outcomes.filter { $0 == false }.count == 1, "round \(round): exactly one ballot is new")
        }
    }

    /// At shutdown the results still waiting for their interval are published, not dropped.
    @Test func pendingResultsArePublishedOnShutdown() async throws {
        // An interval far longer than the test: only the drain can publish the second ballot.
        let test = try TestVenue(resultsInterval: .seconds(600))
        let group = ServiceGroup(services: [test.venue.results], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let session = try await test.sessionWithOpenPoll()
            _ = try session.execute(.join("bob"))
            // Wait until the service runs (a ballot before that publishes at once).
            try await waitUntil { test.venue.results.isRunning }
            _ = try session.execute(.vote(participant: "ada", poll: "p1", ballot: .options(["o1"])))
            try await waitUntil { test.lastPublishedTotal(session, poll: "p1") == 1 }
            _ = try session.execute(.vote(participant: "bob", poll: "p1", ballot: .options(["o2"])))
            try await Task.sleep(for: .milliseconds(100))
            #expect(test.lastPublishedTotal(session, poll: "p1") == 1, "coalesced: the second waits for its interval")
            let started = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(started.duration(to: .now) < .seconds(300), "the drain does not wait out the interval")
            #expect(test.lastPublishedTotal(session, poll: "p1") == 2, "the last ballot's results are in the log")
            #expect(test.log.durableSequence == test.log.events(of: session.id, after: 0, through: UInt64.max)?.last?.sequence)
        }
    }
}

/// Polls `condition` up to 6,000 times, 10 ms apart. Counted in attempts, not by the clock:
/// slow suites running beside this one may hold the test threads for a long while.
func waitUntil(_ condition: () -> Bool) async throws {
    for _ in 0..<6_000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out")
}
