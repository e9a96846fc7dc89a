import Foundation
import Testing

@testable import TallyDomain

extension Room {
    mutating func qna(_ command: QnACommand, limits: SessionLimits = .init()) throws(DomainError) -> [SessionEvent] {
        if case .ask(let who, _, _, _, _) = command, !state.participants.contains(who) { try run(.join(who)) }
        if case .upvote(let who, _, _) = command, !state.participants.contains(who) { try run(.join(who)) }
        return try run(.qna(command), limits: limits)
    }

    @discardableResult
    mutating func ask(_ who: ParticipantID, _ id: QuestionID, _ text: String = "Why?", name: String? = nil, limits: SessionLimits = .init())
        throws(DomainError) -> [SessionEvent]
    {
        try qna(.ask(participant: who, questionId: id, text: text, name: name, askedAt: "2026-12-02T10:00:00.000Z"), limits: limits)
    }

    func questions(for role: Role, _ who: ParticipantID? = nil, order: QuestionOrder = .top) -> [QuestionView] {
        state.view(for: role, participant: who, lastEventId: nil, questionOrder: order).qna.questions
    }
}

@Suite("Audience Q&A")
struct QnATests {
    @Test func questionsAreAskedOnlyWhileQnAIsOpen() throws {
        var room = try Room()
        #expect(throws: DomainError.conflict("the presenter has not opened Q&A")) { try room.ask("a", "q1") }
        _ = try room.qna(.open(moderation: .post, anonymous: false))
        #expect(throws: DomainError.conflict("Q&A is already open")) { try room.qna(.open(moderation: .post, anonymous: true)) }
        try room.ask("a", "q1", "  Why   now? ", name: " Ana ")
        #expect(room.questions(for: .display).map(\.text) == ["Why now?"])
        #expect(room.questions(for: .display).first?.name == "Ana")
        _ = try room.qna(.close)
        #expect(throws: DomainError.conflict("Q&A is closed")) { try room.ask("b", "q2") }
        #expect(room.questions(for: .display).count == 1, "closing keeps the list")
    }

    @Test func askingIsValidated() throws {
        var room = try Room()
        _ = try room.qna(.open(moderation: .post, anonymous: true))
        #expect(throws: DomainError.invalid("this Q&A is anonymous: leave the name out")) { try room.ask("a", "q1", name: "Ana") }
        #expect(throws: DomainError.invalid("the question is empty")) { try room.ask("a", "q1", "  ") }
        #expect(throws: DomainError.invalid("the question is longer than 280 characters")) {
            try room.ask("a", "q1", String(repeating: "x", count: 281))
        }
        var limits = SessionLimits()
        limits.maxQuestionsPerParticipant = 2
        limits.maxQuestionsPerSession = 3
        try room.ask("a", "q1", limits: limits)
        try room.ask("a", "q2", limits: limits)
        _ = try room.qna(.withdraw(participant: "a", questionId: "q2"))
        #expect(throws: DomainError.limitReached("you have asked 2 questions in this session, the most one person may")) {
            try room.ask("a", "q3", limits: limits)
        }
        try room.ask("b", "q4", limits: limits)
        #expect(throws: DomainError.limitReached("this session holds at most 3 questions")) { try room.ask("c", "q5", limits: limits) }
    }

    @Test func upvotesAreOnePerPersonNotOnOnesOwnAndIdempotent() throws {
        var room = try Room()
        _ = try room.qna(.open(moderation: .post, anonymous: true))
        try room.ask("a", "q1")
        try room.ask("b", "q2")
        for who in ["b", "c", "d"] { _ = try room.qna(.upvote(participant: who, questionId: "q1", on: true)) }
        #expect(try room.qna(.upvote(participant: "b", questionId: "q1", on: true)).isEmpty, "twice is once")
        #expect(try room.qna(.upvote(participant: "c", questionId: "q2", on: false)).isEmpty, "taking back nothing is nothing")
        #expect(throws: DomainError.conflict("you cannot upvote your own question")) {
            try room.qna(.upvote(participant: "a", questionId: "q1", on: true))
        }
        _ = try room.qna(.upvote(participant: "d", questionId: "q1", on: false))
        _ = try room.qna(.upvote(participant: "a", questionId: "q2", on: true))
        #expect(room.questions(for: .participant, "b").map { [$0.questionId: $0.upvotes] } == [["q1": 2], ["q2": 1]])
        #expect(room.questions(for: .participant, "b").first?.upvotedByMe == true)
        #expect(room.questions(for: .participant, "b").last?.mine == true)
        #expect(room.questions(for: .display, order: .newest).map(\.questionId) == ["q2", "q1"])
        // Counts go out coalesced, only what changed since the last time.
        let published = try room.run(.qna(.publishUpvotes))
        #expect(
            published == [
                .questionUpvotes(.init(counts: [.init(questionId: "q1", upvotes: 2), .init(questionId: "q2", upvotes: 1)], viewer: nil))
            ])
        #expect(try room.run(.qna(.publishUpvotes)).isEmpty)
        _ = try room.qna(.upvote(participant: "c", questionId: "q2", on: true))
        #expect(
            try room.run(.qna(.publishUpvotes)) == [.questionUpvotes(.init(counts: [.init(questionId: "q2", upvotes: 2)], viewer: nil))])
    }

    @Test func pendingAndHiddenQuestionsNeverReachTheRoom() throws {
        var room = try Room()
        _ = try room.qna(.open(moderation: .pre, anonymous: true))
        let asked = try room.ask("a", "q1", "Budget?")
        #expect(asked.first?.audience == .presenter, "a pending question's text is for the presenter")
        #expect(room.questions(for: .display).isEmpty && room.questions(for: .participant, "b").isEmpty)
        #expect(room.questions(for: .participant, "a").map(\.state) == [.pending], "its author sees it waiting")
        #expect(room.state.view(for: .presenter, lastEventId: nil).qna.pendingCount == 1)
        #expect(throws: DomainError.notFound("no question q1 in this session")) {
            try room.qna(.upvote(participant: "b", questionId: "q1", on: true))
        }
        let approved = try room.run(.qna(.moderate("q1", .approve)))
        #expect(approved.first?.audience == .everyone)
        #expect(room.questions(for: .display).map(\.text) == ["Budget?"])
        #expect(throws: DomainError.conflict("question q1 is not waiting for approval")) { try room.run(.qna(.moderate("q1", .approve))) }
        try room.run(.qna(.moderate("q1", .hide)))
        #expect(room.questions(for: .display).isEmpty && room.questions(for: .presenter).map(\.state) == [.hidden])
        #expect(throws: DomainError.notFound("no question q1 in this session"), "hidden: the room cannot find it") {
            try room.qna(.upvote(participant: "b", questionId: "q1", on: false))
        }
        try room.run(.qna(.moderate("q1", .unhide)))
        #expect(room.questions(for: .display).map(\.state) == [.visible])
    }

    @Test func oneHighlightAtATimeAndAnsweredEndsIt() throws {
        var room = try Room()
        _ = try room.qna(.open(moderation: .post, anonymous: true))
        try room.ask("a", "q1")
        try room.ask("b", "q2")
        try room.run(.qna(.moderate("q1", .highlight)))
        try room.run(.qna(.moderate("q2", .highlight)))
        #expect(room.state.qna.highlighted == "q2")
        #expect(room.questions(for: .display).map(\.highlighted) == [false, true])
        try room.run(.qna(.moderate("q2", .answered)))
        #expect(room.state.qna.highlighted == nil)
        #expect(throws: DomainError.conflict("question q2 is answered; only a visible question can be highlighted")) {
            try room.run(.qna(.moderate("q2", .highlight)))
        }
        try room.run(.qna(.moderate("q1", .highlight)))
        _ = try room.qna(.withdraw(participant: "a", questionId: "q1"))
        #expect(room.state.qna.highlighted == nil && room.questions(for: .presenter).map(\.questionId) == ["q2"])
        #expect(throws: DomainError.notFound("you have no question q2 in this session")) {
            try room.qna(.withdraw(participant: "a", questionId: "q2"))
        }
    }

    @Test func endingTheSessionClosesQnA() throws {
        var room = try Room()
        _ = try room.qna(.open(moderation: .post, anonymous: true))
        try room.ask("a", "q1")
        try room.run(.join("b"))
        try room.run(.endSession)
        #expect(room.state.qna.state == .closed)
        #expect(throws: DomainError.conflict("Q&A is closed")) { try room.qna(.upvote(participant: "b", questionId: "q1", on: true)) }
        #expect(throws: DomainError.conflict("session has ended")) { try room.qna(.withdraw(participant: "a", questionId: "q1")) }
    }

    @Test func theBlocklistHidesAQuestionButNotFromItsAuthor() throws {
        var limits = SessionLimits()
        limits.blocklist = Blocklist(lines: ["idiot"])
        var room = try Room()
        _ = try room.qna(.open(moderation: .post, anonymous: false))
        try room.ask("a", "q1", "Is the CEO an idiot?", limits: limits)
        try room.ask("b", "q2", "Fine question", name: "Idiot", limits: limits)
        #expect(room.questions(for: .display).isEmpty)
        #expect(room.questions(for: .participant, "a").map(\.state) == [.visible], "looks accepted to its author")
        #expect(room.questions(for: .presenter).allSatisfy { $0.blocked == true && $0.state == .hidden })
    }

    /// Random Q&A traffic: replaying the stored (JSON round-tripped) events rebuilds the same
    /// board, and the counts equal the upvoters held.
    @Test(arguments: 1...4)
    func replayingTheEventsRebuildsTheSameBoard(seed: UInt64) throws {
        var rng = SeededGenerator(state: seed)
        var room = try Room()
        _ = try room.qna(.open(moderation: seed % 2 == 0 ? .pre : .post, anonymous: false))
        for step in 0..<300 {
            let who = "p\(Int.random(in: 0..<12, using: &rng))"
            let known = room.state.qna.allQuestions.map(\.questionId)
            let pick = known.randomElement(using: &rng) ?? "none"
            let command: SessionCommand =
                switch Int.random(in: 0..<10, using: &rng) {
                case 0, 1: .qna(.ask(participant: who, questionId: "q\(step)", text: "Question \(step)", name: nil, askedAt: "t"))
                case 2, 3, 4, 5: .qna(.upvote(participant: who, questionId: pick, on: Bool.random(using: &rng)))
                case 6: .qna(.moderate(pick, QuestionAction.allCases.randomElement(using: &rng)!))
                case 7: .qna(.withdraw(participant: who, questionId: pick))
                case 8: .qna(.publishUpvotes)
                default: .qna(step % 50 == 0 ? .close : .open(moderation: .post, anonymous: true))
                }
            if !room.state.participants.contains(who) { try room.run(.join(who)) }
            _ = try? room.run(command)
        }
        let rebuilt = try room.replayedFromStoredEvents()
        #expect(rebuilt == room.state)
        for role in Role.allCases {
            #expect(
                rebuilt.view(for: role, participant: "p1", lastEventId: nil)
                    == room.state.view(for: role, participant: "p1", lastEventId: nil))
        }
        for question in room.state.qna.allQuestions where question.state == .visible {
            #expect(!(room.state.qna.upvoters[question.questionId] ?? []).contains(question.author))
        }
    }
}
