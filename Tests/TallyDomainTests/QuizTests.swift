import Foundation
import Testing

@testable import TallyDomain

extension Room {
    /// A quiz question ("Capital of France?": o2 is right), opened now.
    mutating func quiz(
        _ id: PollID = "q1", kind: PollKind = .single, correct: [OptionID] = ["o2"], seconds: Int = 20, points: Int = 1000
    ) throws(DomainError) {
        var question = create(kind, id, options: ["Paris", "Lyon", "Nice"], question: "Capital of France?")
        question.quiz = QuizSettings(correctOptionIds: correct, timeLimitSeconds: seconds, points: points)
        try ask(question)
    }

    mutating func answer(_ who: ParticipantID, _ options: [OptionID], on poll: PollID = "q1", after ms: Int) throws(DomainError) {
        let opened = state.poll(poll)!.openedAt.flatMap(EventTime.parse)!
        now = Date(timeIntervalSince1970: Double(opened + Int64(ms)) / 1000)
        try cast(who, .options(options), on: poll)
    }

    func mark(_ who: ParticipantID, on poll: PollID = "q1") -> QuizMark? { state.quizMark(of: who, on: poll) }

    func board() -> [String] { state.standings().rows.map { "\($0.rank) \($0.nickname) \($0.score)" } }
}

@Suite("Quiz")
struct QuizTests {
    @Test func pointsRunFromAllAtOnceToHalfAtTheLimit() throws {
        var room = try Room()
        try room.quiz(seconds: 20, points: 1000)
        try room.answer("a", ["o2"], after: 0)
        try room.answer("b", ["o2"], after: 20_000)
        try room.answer("c", ["o2"], after: 5_000)
        try room.answer("d", ["o2"], after: 7)  // 1000 × (1 − 0.00035/2) = 999.825 → 1000
        try room.answer("e", ["o1"], after: 1)
        #expect(room.mark("a") == QuizMark(correct: true, points: 1000, elapsedMs: 0))
        #expect(room.mark("b") == QuizMark(correct: true, points: 500, elapsedMs: 20_000))
        #expect(room.mark("c")?.points == 875)
        #expect(room.mark("d")?.points == 1000)
        #expect(room.mark("e") == QuizMark(correct: false, points: 0, elapsedMs: 1))
        // Half away from zero: 3 points, 5 s limit, 1 s in → 3 × 0.9 = 2.7 → 3; 2.5 s in → 2.25 → 2.
        let three = QuizSettings(correctOptionIds: ["o1"], timeLimitSeconds: 5, points: 3)
        #expect(three.points(afterMilliseconds: 1_000) == 3 && three.points(afterMilliseconds: 2_500) == 2)
        #expect(QuizSettings(correctOptionIds: nil, timeLimitSeconds: 10, points: 5).points(afterMilliseconds: 10_000) == 3)  // 2.5 → 3
        // Exactly 871.5 (1000 × (1 − 1.285/5/2)): in floating point a hair below, in whole numbers 872.
        let five = QuizSettings(correctOptionIds: nil, timeLimitSeconds: 5)
        #expect(five.points(afterMilliseconds: 1_285) == 872)
        // Every millisecond of every limit agrees with exact rational arithmetic.
        for limit in [5, 7, 20, 300] {
            let settings = QuizSettings(correctOptionIds: nil, timeLimitSeconds: limit, points: 1000)
            let l = Int64(limit) * 1000
            for t in stride(from: Int64(0), through: l, by: 7) {
                let twice = 1000 * (2 * l - t) * 2 / (2 * l)  // 2 × the exact value, floored
                #expect(settings.points(afterMilliseconds: t) == Int((twice + 1) / 2), "limit \(limit) s, t \(t) ms")
            }
        }
    }

    @Test func aBallotJustPastTheLimitIsRefusedEvenBeforeTheCloseIsWritten() throws {
        var room = try Room()
        try room.quiz(seconds: 10)
        #expect(throws: DomainError.self) { try room.answer("late", ["o2"], after: 10_001) }
        #expect(room.state.poll("q1")?.state == .open, "refused by time alone: nothing closed it yet")
        try room.answer("on time", ["o2"], after: 10_000)
        #expect(room.mark("on time")?.points == 500)
    }

    @Test func theFirstAnswerIsFinal() throws {
        var room = try Room()
        try room.quiz()
        try room.answer("a", ["o1"], after: 100)
        #expect(throws: DomainError.conflict("answers in a quiz are final")) { try room.answer("a", ["o2"], after: 200) }
        #expect(room.state.ballot(of: "a", on: "q1") == .choice(["o1"]))
    }

    @Test func multipleNeedsExactlyTheRightSet() throws {
        var room = try Room()
        try room.quiz(kind: .multiple, correct: ["o1", "o3"])
        try room.answer("exact", ["o3", "o1"], after: 0)
        try room.answer("short", ["o1"], after: 0)
        try room.answer("over", ["o1", "o2", "o3"], after: 0)
        #expect(room.mark("exact")?.correct == true)
        #expect(room.mark("short")?.correct == false && room.mark("over")?.correct == false)
    }

    @Test func creationNeedsRightAnswersThatExistAndSaneLimits() throws {
        var room = try Room()
        func refused(_ settings: QuizSettings, kind: PollKind = .single) -> DomainError? {
            var question = create(kind, "x", options: kind.hasOptions ? ["A", "B"] : [])
            if kind == .scale { question.scale = ScaleSettings(min: 1, max: 5) }
            question.quiz = settings
            do throws(DomainError) {
                try room.ask(question)
                return nil
            } catch { return error }
        }
        #expect(refused(.init(correctOptionIds: [], timeLimitSeconds: 20)) != nil)
        #expect(refused(.init(correctOptionIds: nil, timeLimitSeconds: 20)) != nil)
        #expect(refused(.init(correctOptionIds: ["o3"], timeLimitSeconds: 20)) != nil)
        #expect(refused(.init(correctOptionIds: ["o1", "o1"], timeLimitSeconds: 20)) != nil)
        #expect(refused(.init(correctOptionIds: ["o1"], timeLimitSeconds: 4)) != nil)
        #expect(refused(.init(correctOptionIds: ["o1"], timeLimitSeconds: 301)) != nil)
        #expect(refused(.init(correctOptionIds: ["o1"], timeLimitSeconds: 20, points: 0)) != nil)
        #expect(refused(.init(correctOptionIds: ["o1"], timeLimitSeconds: 20), kind: .scale) != nil)
        #expect(refused(.init(correctOptionIds: ["o1"], timeLimitSeconds: 20), kind: .ranking) != nil)
        #expect(room.state.polls.isEmpty)
    }

    @Test func theRoomLearnsTheAnswerOnlyWhenTheQuestionCloses() throws {
        var room = try Room()
        try room.run(.join("p"))
        try room.quiz()
        let opened = room.events.last { $0.type == "poll.opened" }!
        #expect(opened.audience == .everyone)
        let wire = try JSONEncoder().encode(AnyEncodable(opened.publicPayload))
        #expect(!String(decoding: wire, as: UTF8.self).contains("correctOptionIds"))
        #expect(room.state.view(for: .participant, participant: "p", lastEventId: nil).polls[0].poll.quiz?.correctOptionIds == nil)
        #expect(room.state.view(for: .display, lastEventId: nil).polls[0].results == nil, "no distribution while open")
        #expect(room.state.view(for: .presenter, lastEventId: nil).polls[0].poll.quiz?.correctOptionIds == ["o2"])
        try room.answer("p", ["o2"], after: 1000)
        let published = try room.run(.publishResults("q1"))
        #expect(published.first { $0.type == "poll.results" }?.audience == .presenter)
        #expect(throws: DomainError.conflict("a quiz question shows its results when it closes")) { try room.run(.revealPoll("q1")) }
        #expect(room.state.standings().row(of: "p")?.score == 0, "points count once the question closes")
        try room.run(.closePoll("q1"))
        #expect(room.state.view(for: .participant, participant: "p", lastEventId: nil).polls[0].poll.quiz?.correctOptionIds == ["o2"])
        #expect(room.state.view(for: .participant, participant: "p", lastEventId: nil).polls[0].myQuiz?.correct == true)
    }

    @Test func closingScoresTheQuestionAndTellsEachPlayerAlone() throws {
        var room = try Room()
        for who in ["a", "b", "c"] { try room.run(.join(who)) }
        try room.quiz()
        try room.answer("b", ["o2"], after: 4_000)
        try room.answer("a", ["o1"], after: 1_000)
        let events = try room.run(.closePoll("q1"))
        #expect(events.map(\.type) == ["poll.closed", "quiz.results", "quiz.leaderboard", "quiz.score", "quiz.score", "quiz.score"])
        guard case .quizResults(let results) = events[1], case .quizLeaderboard(let board) = events[2] else {
            Issue.record("results and leaderboard")
            return
        }
        #expect(results.correctOptionIds == ["o2"] && results.answered == 2 && results.correct == 1)
        #expect(board.entries.map(\.nickname) == ["Player 2", "Player 1", "Player 3"] && board.entries.map(\.rank) == [1, 2, 2])
        let scores = events.compactMap { event -> SessionEvent.QuizScore? in
            if case .quizScore(let s) = event { return s } else { return nil }
        }
        for score in scores {
            let audience = SessionEvent.quizScore(score).audience
            #expect(audience.reaches(.participant, participant: score.participantId))
            #expect(!audience.reaches(.participant, participant: "someone else"))
            #expect(!audience.reaches(.presenter, participant: nil) && !audience.reaches(.display, participant: nil))
        }
        #expect(scores.map(\.participantId) == ["a", "b", "c"])
        #expect(scores.map(\.answered) == [true, true, false] && scores.map(\.points) == [0, 900, 0])
        #expect(scores.allSatisfy { $0.players == 3 })
    }

    @Test func tiesShareARankAndWhoReachedTheScoreFirstLeads() throws {
        var room = try Room()
        for who in ["a", "b", "c", "d"] { try room.run(.join(who)) }
        try room.quiz("q1", seconds: 10)
        try room.answer("c", ["o2"], after: 2_000)  // 900
        try room.answer("a", ["o2"], after: 2_000)  // 900, as fast as c
        try room.answer("b", ["o2"], after: 6_000)  // 700
        try room.run(.closePoll("q1"))
        try room.quiz("q2", seconds: 10, points: 200)
        try room.answer("b", ["o2"], on: "q2", after: 0)  // 700 + 200 = 900, reached in the second question
        try room.run(.closePoll("q2"))
        // a and c reached 900 in q1 at the same moment: then who joined first; b reached it later.
        #expect(room.board() == ["1 Player 1 900", "1 Player 3 900", "1 Player 2 900", "4 Player 4 0"])
    }

    @Test func whoReachedTheScoreFirstIsByTheClockNotTheOrderTheQuestionsWereWritten() throws {
        var room = try Room()
        for who in ["a", "b"] { try room.run(.join(who)) }
        var first = create(.single, "q1", options: ["A", "B"])
        first.quiz = QuizSettings(correctOptionIds: ["o1"], timeLimitSeconds: 10)
        var second = first
        second.pollId = "q2"
        try room.run(.createPoll(first))
        try room.run(.createPoll(second))
        try room.run(.openPoll("q2"))  // the presenter asks the second one first
        try room.answer("b", ["o1"], on: "q2", after: 1_000)  // 950
        try room.run(.closePoll("q2"))
        room.now += 60
        try room.run(.openPoll("q1"))
        try room.answer("a", ["o1"], on: "q1", after: 1_000)  // 950, a minute later
        try room.run(.closePoll("q1"))
        #expect(room.board() == ["1 Player 2 950", "1 Player 1 950"])
    }

    @Test func aResetStartsANewRound() throws {
        var room = try Room()
        try room.run(.join("a"))
        try room.quiz("q1")
        try room.answer("a", ["o2"], after: 0)
        #expect(throws: DomainError.self) { try room.run(.resetScores) }  // a question is open
        try room.run(.closePoll("q1"))
        #expect(room.board() == ["1 Player 1 1000"])
        let reset = try room.run(.resetScores)
        #expect(reset.map(\.type) == ["quiz.reset", "quiz.leaderboard"])
        #expect(room.board() == ["1 Player 1 0"])
        #expect(try room.run(.resetScores).isEmpty, "nothing scored since: already a fresh round")
        try room.quiz("q2")
        try room.answer("a", ["o2"], on: "q2", after: 10_000)
        try room.run(.closePoll("q2"))
        #expect(room.board() == ["1 Player 1 750"])
    }

    @Test func nicknamesAreRequiredWhenAskedUniqueWithoutCaseAndChecked() throws {
        var limits = SessionLimits()
        limits.blocklist = Blocklist(lines: ["rude"])
        var rng = SeededGenerator(state: 3)
        let created = try SessionState.create(id: "s", title: "Quiz", joinCode: JoinCode.random(using: &rng), nicknames: .required)
        var room = try Room()
        room.state = SessionState(created: created)
        room.events = [.sessionCreated(created)]
        #expect(throws: DomainError.invalid("this session asks for a nickname")) { try room.run(.join("x"), limits: limits) }
        try room.run(.join("a", nickname: "  Ada  "), limits: limits)
        #expect(room.state.nickname(of: "a") == "Ada")
        #expect(throws: DomainError.conflict("the nickname \"ＡＤＡ\" is taken; choose another")) {
            try room.run(.join("b", nickname: "ＡＤＡ"), limits: limits)
        }
        #expect(throws: DomainError.self) { try room.run(.join("b", nickname: String(repeating: "x", count: 21)), limits: limits) }
        #expect(throws: DomainError.self) { try room.run(.join("b", nickname: "rude"), limits: limits) }
        #expect(throws: DomainError.self) { try room.run(.join("b", nickname: "\u{200B}"), limits: limits) }
        for taken in ["Player 3", "player3", "PLAYER  17", "Player"] {
            #expect(throws: DomainError.self, "\(taken) is how unnamed players show") {
                try room.run(.join("b", nickname: taken), limits: limits)
            }
        }
        try room.run(.join("b", nickname: String(repeating: "x", count: 20)), limits: limits)
        try room.run(.setNicknames(.optional))
        try room.run(.join("c"))
        #expect(room.state.displayName("c") == "Player 3")
    }

    @Test func replayingTheStoredEventsRebuildsTheSameScoresAndLeaderboard() throws {
        var room = try Room()
        var rng = SeededGenerator(state: 11)
        for i in 0..<40 { try room.run(.join("p\(i)", nickname: i % 3 == 0 ? nil : "N\(i)")) }
        for (q, kind) in [("q1", PollKind.single), ("q2", .multiple), ("q3", .single)] {
            try room.quiz(q, kind: kind, correct: kind == .single ? ["o2"] : ["o1", "o2"], seconds: 30)
            for i in 0..<40 where rng.next() % 4 != 0 {
                let choice: [OptionID] =
                    kind == .single ? ["o\(rng.next() % 3 + 1)"] : ["o1", "o2", "o3"].filter { _ in rng.next() % 2 == 0 }
                guard !choice.isEmpty else { continue }
                try room.answer("p\(i)", choice, on: q, after: Int(rng.next() % 30_000))
            }
            try room.run(.closePoll(q))
            if q == "q2" { try room.run(.resetScores) }
        }
        let rebuilt = try room.replayedFromStoredEvents()
        #expect(rebuilt == room.state)
        #expect(rebuilt.leaderboard(for: .presenter) == room.state.leaderboard(for: .presenter))
        #expect(room.state.leaderboard(for: .presenter).entries.contains { $0.score > 0 })
    }
}
