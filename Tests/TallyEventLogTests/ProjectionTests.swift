import Foundation
import TallyDomain
import Testing

@testable import TallyEventLog

/// The database projection is what a restart rebuilds sessions from: what it restores must be
/// the state the live session had, quiz and all.
@Suite struct ProjectionTests {
    @Test func aQuizSessionRestoresToTheStateItHadLive() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tally-projection-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let projection = try SQLiteProjection(path: dir.appendingPathComponent("tally.sqlite").path)

        var rng = SystemRandomNumberGenerator()
        let created = try SessionState.create(id: "s1", title: "Quiz night", joinCode: JoinCode.random(using: &rng), nicknames: .required)
        var state = SessionState(created: created)
        var logged = [LoggedEvent(sequence: 1, sessionId: "s1", timestamp: Date(), event: .sessionCreated(created))]
        var clock = Date(timeIntervalSince1970: 1_800_000_000)
        func run(_ command: SessionCommand, after seconds: Double = 0) throws {
            clock += seconds
            for event in try state.decide(command, now: clock) {
                state.apply(event)
                logged.append(LoggedEvent(sequence: UInt64(logged.count + 1), sessionId: "s1", timestamp: clock, event: event))
            }
        }
        for (id, name) in [("a", "Ada"), ("b", "Bob"), ("c", "Cy")] { try run(.join(id, nickname: name)) }
        func question(_ id: PollID) -> SessionCommand {
            .createPoll(
                .init(
                    pollId: id, question: "Capital?", options: ["Paris", "Lyon"], kind: .single, openImmediately: true,
                    quiz: QuizSettings(correctOptionIds: ["o1"], timeLimitSeconds: 20)))
        }
        try run(question("q1"))
        try run(.vote(participant: "a", poll: "q1", ballot: .options(["o1"])), after: 3)
        try run(.vote(participant: "b", poll: "q1", ballot: .options(["o2"])), after: 1)
        try run(.closePoll("q1"), after: 16)
        try run(.resetScores)
        try run(question("q2"))
        try run(.vote(participant: "c", poll: "q2", ballot: .options(["o1"])), after: 2)
        try run(.closePoll("q2"), after: 1)
        try run(.setNicknames(.optional))
        try run(question("q3"))  // open at the restart: its countdown must resume
        try run(.vote(participant: "b", poll: "q3", ballot: .options(["o1"])), after: 5)

        try projection.apply(logged)
        let restored = try #require(try projection.load().first)
        #expect(restored.state == state)
        #expect(restored.lastSequence == UInt64(logged.count))
        #expect(restored.state.leaderboard(for: .presenter) == state.leaderboard(for: .presenter))
        #expect(restored.state.closesAt("q3") == state.closesAt("q3") && state.closesAt("q3") != nil)
        #expect(restored.state.standings().rows.map(\.nickname) == ["Cy", "Ada", "Bob"])
    }
}
