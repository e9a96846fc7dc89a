import Foundation
import Testing

@testable import TallyDomain

/// A deterministic generator so join codes and ids in tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Applies commands the way the server does: decide, then fold the events in.
struct Room {
    var state: SessionState
    var events: [SessionEvent] = []
    /// The injected clock: moves only when a test moves it.
    var now = Date(timeIntervalSince1970: 1_800_000_000)

    init(title: String = "All hands") throws {
        var rng = SeededGenerator(state: 1)
        let created = try SessionState.create(id: "s1", title: title, joinCode: JoinCode.random(using: &rng))
        state = SessionState(created: created)
        events = [.sessionCreated(created)]
    }

    @discardableResult
    mutating func run(_ command: SessionCommand) throws(DomainError) -> [SessionEvent] {
        let new = try state.decide(command, now: now)
        for event in new { state.apply(event) }
        events += new
        return new
    }

    mutating func poll(
        _ id: PollID = "p1", options: [String] = ["Yes", "No"], kind: PollKind = .single,
        visibility: ResultsVisibility = .live, open: Bool = true
    ) throws {
        try run(
            .createPoll(
                .init(pollId: id, question: "Ship it?", options: options, kind: kind, resultsVisibility: visibility, openImmediately: open))
        )
    }

    func counts(_ poll: PollID) -> [Int] { state.results(of: poll)!.counts!.map(\.count) }
}

@Suite("Join codes")
struct JoinCodeTests {
    @Test func codesAreSixUnambiguousCharacters() {
        var rng = SeededGenerator(state: 42)
        for _ in 0..<500 {
            let code = JoinCode.random(using: &rng).value
            #expect(code.count == 6)
            #expect(!code.contains(where: { "O0I1L".contains($0) }))
        }
    }

    @Test func typedCodesAreNormalised() {
        #expect(JoinCode("k7qx-2m")?.value == "K7QX2M")
        #expect(JoinCode(" K7Q X2M ")?.value == "K7QX2M")
        #expect(JoinCode("K7QX2") == nil, "too short")
        #expect(JoinCode("K7QX2O") == nil, "O is not in the alphabet")
        #expect(JoinCode("K7QX2M9") == nil, "too long")
    }
}

@Suite("Polls")
struct PollTests {
    @Test func createdPollIsADraftSeenOnlyByThePresenter() throws {
        var room = try Room()
        let events = try room.run(.createPoll(.init(pollId: "p1", question: "  Lunch?  ", options: ["Pizza", "Salad"], kind: .single)))
        #expect(events.map(\.type) == ["poll.created"])
        #expect(events[0].audience == .presenter)
        #expect(room.state.poll("p1")?.state == .draft)
        #expect(room.state.poll("p1")?.question == "Lunch?", "whitespace is trimmed")
        #expect(room.state.poll("p1")?.options.map(\.id) == ["o1", "o2"])
    }

    @Test func quickPollIsCreatedOpen() throws {
        var room = try Room()
        let events = try room.run(
            .createPoll(.init(pollId: "p1", question: "Now?", options: ["a", "b"], kind: .single, openImmediately: true)))
        #expect(events.map(\.type) == ["poll.created", "poll.opened"])
        #expect(room.state.openPollId == "p1")
        guard case .pollOpened(let opened) = events[1] else {
            Issue.record("expected poll.opened")
            return
        }
        #expect(opened.poll.options.map(\.label) == ["a", "b"], "poll.opened carries the whole poll")
        #expect(events[1].audience == .everyone)
    }

    @Test(arguments: [
        ([String](), "0"), (["one"], "1"), (Array(repeating: "x", count: 13).enumerated().map { "\($0.offset)" }, "13"),
    ])
    func optionCountOutsideTwoToTwelveIsRefused(options: [String], count: String) throws {
        var room = try Room()
        #expect(throws: DomainError.invalid("a poll has 2 to 12 options, got \(count)")) {
            try room.poll(options: options)
        }
        #expect(room.state.polls.isEmpty)
    }

    @Test func twelveOptionsAreAccepted() throws {
        var room = try Room()
        try room.poll(options: (1...12).map { "Option \($0)" })
        #expect(room.state.poll("p1")?.options.count == 12)
    }

    @Test func emptyQuestionEmptyOptionAndDuplicatesAreRefused() throws {
        var room = try Room()
        #expect(throws: DomainError.invalid("question must not be empty")) {
            try room.run(.createPoll(.init(pollId: "p1", question: "   ", options: ["a", "b"], kind: .single)))
        }
        #expect(throws: DomainError.invalid("option 2 is empty")) {
            try room.run(.createPoll(.init(pollId: "p1", question: "Q", options: ["a", " "], kind: .single)))
        }
        #expect(throws: DomainError.invalid("option \"a\" appears twice")) {
            try room.run(.createPoll(.init(pollId: "p1", question: "Q", options: ["a", "a"], kind: .single)))
        }
        #expect(throws: DomainError.invalid("question is longer than 500 characters")) {
            try room.run(
                .createPoll(.init(pollId: "p1", question: String(repeating: "q", count: 501), options: ["a", "b"], kind: .single)))
        }
    }

    @Test func openingAPollClosesTheOpenOne() throws {
        var room = try Room()
        try room.poll("p1")
        try room.poll("p2", open: false)
        let events = try room.run(.openPoll("p2"))
        #expect(events.map(\.type) == ["poll.closed", "poll.opened"])
        #expect(room.state.poll("p1")?.state == .closed)
        #expect(room.state.openPollId == "p2")
        #expect(room.state.polls.filter { $0.state == .open }.count == 1)
    }

    @Test func lifecycleOnlyMovesForward() throws {
        var room = try Room()
        try room.poll(open: false)
        #expect(throws: DomainError.conflict("poll p1 is not open (it is draft)")) { try room.run(.closePoll("p1")) }
        try room.run(.openPoll("p1"))
        #expect(throws: DomainError.conflict("poll p1 is already open")) { try room.run(.openPoll("p1")) }
        try room.run(.closePoll("p1"))
        #expect(throws: DomainError.conflict("poll p1 is closed; create a new poll to ask again")) { try room.run(.openPoll("p1")) }
        #expect(throws: DomainError.notFound("no poll nope in this session")) { try room.run(.openPoll("nope")) }
    }

    @Test func pollsPerSessionAreLimited() throws {
        var room = try Room()
        var limits = SessionLimits()
        limits.maxPollsPerSession = 2
        for id in ["a", "b"] {
            let events = try room.state.decide(
                .createPoll(.init(pollId: id, question: "Q", options: ["x", "y"], kind: .single)), limits: limits, now: room.now)
            events.forEach { room.state.apply($0) }
        }
        #expect(throws: DomainError.limitReached("a session holds at most 2 polls")) {
            try room.state.decide(
                .createPoll(.init(pollId: "c", question: "Q", options: ["x", "y"], kind: .single)), limits: limits, now: room.now)
        }
    }
}

@Suite("Ballots")
struct BallotTests {
    @Test func oneBallotPerParticipantAndChangingItKeepsCountsExact() throws {
        var room = try Room()
        try room.poll(options: ["Yes", "No", "Maybe"])
        try room.run(.join("ana"))
        try room.run(.join("bo"))
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        try room.run(.vote(participant: "bo", poll: "p1", ballot: .options(["o1"])))
        #expect(room.counts("p1") == [2, 0, 0])
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o3"])))
        #expect(room.counts("p1") == [1, 0, 1])
        #expect(room.state.results(of: "p1")?.totalBallots == 2)
        #expect(room.state.ballot(of: "ana", on: "p1") == .choice(["o3"]))
    }

    @Test func ballotsReachNobodyOnlyResultsDo() throws {
        var room = try Room()
        try room.poll()
        try room.run(.join("ana"))
        let events = try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o2"])))
        #expect(events.map(\.type) == ["ballot.cast"])
        #expect(events[0].audience == .nobody)
    }

    @Test func votingOnADraftOrClosedPollIsRefused() throws {
        var room = try Room()
        try room.poll(open: false)
        try room.run(.join("ana"))
        #expect(throws: DomainError.conflict("poll p1 is not open yet")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        }
        try room.run(.openPoll("p1"))
        try room.run(.closePoll("p1"))
        #expect(throws: DomainError.conflict("poll p1 is closed")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        }
        #expect(room.counts("p1") == [0, 0])
    }

    @Test func singleChoiceTakesExactlyOneKnownOption() throws {
        var room = try Room()
        try room.poll()
        try room.run(.join("ana"))
        #expect(throws: DomainError.invalid("this poll takes exactly one option, got 2")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1", "o2"])))
        }
        #expect(throws: DomainError.invalid("choose at least one option")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options([])))
        }
        #expect(throws: DomainError.invalid("poll p1 has no option o9")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o9"])))
        }
    }

    @Test func multipleChoiceCountsEachOptionOnceAndTheBallotOnce() throws {
        var room = try Room()
        try room.poll(options: ["a", "b", "c"], kind: .multiple)
        try room.run(.join("ana"))
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1", "o3"])))
        #expect(room.counts("p1") == [1, 0, 1])
        #expect(room.state.results(of: "p1")?.totalBallots == 1)
        #expect(throws: DomainError.invalid("an option is chosen twice")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1", "o1"])))
        }
    }

    @Test func strangersCannotVote() throws {
        var room = try Room()
        try room.poll()
        #expect(throws: DomainError.notFound("participant is not part of this session")) {
            try room.run(.vote(participant: "ghost", poll: "p1", ballot: .options(["o1"])))
        }
    }
}

@Suite("Visibility")
struct VisibilityTests {
    @Test func hiddenResultsReachOnlyThePresenterBeforeReveal() throws {
        var room = try Room()
        try room.poll(visibility: .hidden)
        try room.run(.join("ana"))
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        let before = try room.run(.publishResults("p1"))
        #expect(before.map(\.type) == ["poll.results", "poll.ballots"])
        #expect(before[0].audience == .presenter, "hidden counts go to the presenter only")
        #expect(before[1].audience == [.display, .participant], "the room learns the turnout")
        #expect(before[1] == .pollBallots(.init(pollId: "p1", totalBallots: 1)))
        let participantView = room.state.view(for: .participant, participant: "ana", lastEventId: nil)
        #expect(participantView.polls[0].results == nil)
        #expect(participantView.polls[0].totalBallots == 1)
        #expect(participantView.polls[0].myBallot == ["o1"])
        // The display is what the audience sees: the same as a participant, no counts.
        let displayView = room.state.view(for: .display, lastEventId: nil)
        #expect(displayView.polls[0].results == nil)
        #expect(displayView.polls[0].totalBallots == 1)
        #expect(room.state.view(for: .presenter, lastEventId: nil).polls[0].results?.counts?.map(\.count) == [1, 0])

        let reveal = try room.run(.revealPoll("p1"))
        #expect(reveal.map(\.type) == ["poll.revealed", "poll.results"])
        #expect(reveal.allSatisfy { $0.audience == .everyone })
        #expect(room.state.view(for: .participant, participant: "ana", lastEventId: nil).polls[0].results?.totalBallots == 1)
        #expect(throws: DomainError.conflict("poll p1 is already revealed")) { try room.run(.revealPoll("p1")) }
    }

    @Test func livePollCannotBeRevealed() throws {
        var room = try Room()
        try room.poll(visibility: .live)
        #expect(throws: DomainError.conflict("poll p1 already shows live results")) { try room.run(.revealPoll("p1")) }
    }

    @Test func draftsAreHiddenFromDisplaysAndParticipants() throws {
        var room = try Room()
        try room.poll("draft", open: false)
        try room.poll("live", open: true)
        #expect(room.state.view(for: .presenter, lastEventId: nil).polls.map(\.poll.id) == ["draft", "live"])
        #expect(room.state.view(for: .display, lastEventId: nil).polls.map(\.poll.id) == ["live"])
        #expect(room.state.view(for: .participant, participant: nil, lastEventId: nil).polls.map(\.poll.id) == ["live"])
    }

    @Test func joinCountIsNotSentToParticipantsAndHidesWhoJoined() throws {
        var room = try Room()
        let events = try room.run(.join("ana"))
        #expect(events[0].audience == [.presenter, .display])
        #expect(room.state.participantCount == 1)
        #expect(throws: DomainError.conflict("participant already joined")) { try room.run(.join("ana")) }
    }
}

@Suite("Joining and links")
struct JoiningTests {
    @Test func closedJoiningTurnsNewPhonesAwayButKeepsVoters() throws {
        var room = try Room()
        try room.poll()
        try room.run(.join("ana"))
        #expect(try room.run(.setJoining(open: false)) == [.joiningChanged(.init(joiningOpen: false))])
        #expect(room.state.view(for: .participant, participant: "ana", lastEventId: nil).joiningOpen == false)
        #expect(throws: DomainError.notAllowed("the presenter has closed this session to new participants")) {
            try room.run(.join("bo"))
        }
        #expect(throws: DomainError.conflict("joining is already closed")) { try room.run(.setJoining(open: false)) }
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        try room.run(.setJoining(open: true))
        try room.run(.join("bo"))
        #expect(room.state.participantCount == 2)
    }

    @Test func rotatingALinkBumpsOnlyItsGeneration() throws {
        var room = try Room()
        #expect(try room.run(.rotateLink(.display)) == [.linkRotated(.init(link: .display, generation: 1))])
        try room.run(.rotateLink(.display))
        #expect(room.state.linkGeneration(.display) == 2)
        #expect(room.state.linkGeneration(.presenter) == 0)
        #expect(SessionEvent.linkRotated(.init(link: .display, generation: 2)).audience == .presenter)
    }
}

@Suite("Session lifecycle")
struct SessionLifecycleTests {
    @Test func endingClosesTheOpenPollAndStopsEverything() throws {
        var room = try Room()
        try room.poll()
        try room.run(.join("ana"))
        let events = try room.run(.endSession)
        #expect(events.map(\.type) == ["poll.closed", "session.ended"])
        #expect(room.state.lifecycle == .ended)
        #expect(throws: DomainError.gone("this session has ended; ask for the new join code")) { try room.run(.join("bo")) }
        #expect(throws: DomainError.conflict("session has ended")) { try room.poll("p2") }
        #expect(throws: DomainError.conflict("poll p1 is closed")) {
            try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1"])))
        }
        #expect(throws: DomainError.conflict("session has ended")) { try room.run(.endSession) }
    }

    @Test func titleIsValidated() {
        #expect(throws: DomainError.invalid("title must not be empty")) {
            try SessionState.create(id: "s", title: "  ", joinCode: JoinCode("AAAAAA")!)
        }
        #expect(throws: DomainError.invalid("title is longer than 200 characters")) {
            try SessionState.create(id: "s", title: String(repeating: "t", count: 201), joinCode: JoinCode("AAAAAA")!)
        }
    }

    @Test func replayingTheEventsRebuildsTheSameState() throws {
        var room = try Room()
        try room.poll("p1", options: ["a", "b", "c"], kind: .multiple, visibility: .hidden)
        for p in ["ana", "bo", "cy"] { try room.run(.join(p)) }
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o1", "o2"])))
        try room.run(.vote(participant: "bo", poll: "p1", ballot: .options(["o3"])))
        try room.run(.vote(participant: "ana", poll: "p1", ballot: .options(["o3"])))
        try room.poll("p2")
        try room.run(.revealPoll("p1"))
        try room.run(.vote(participant: "cy", poll: "p2", ballot: .options(["o2"])))
        try room.run(.endSession)

        guard case .sessionCreated(let created) = room.events[0] else {
            Issue.record("first event")
            return
        }
        var rebuilt = SessionState(created: created)
        for event in room.events.dropFirst() { rebuilt.apply(event) }
        #expect(rebuilt == room.state)
        #expect(rebuilt.results(of: "p1")?.counts?.map(\.count) == [0, 0, 2])
    }
}
