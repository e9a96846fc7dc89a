import Foundation

/// One session as the room knows it: the projection of its events.
///
/// `decide` checks a command against the current state and returns the events it causes (or
/// refuses it); `apply` is the only way the state changes. Replaying a session's events through
/// `apply` rebuilds exactly the state that was live, which is how a restart recovers.
public struct SessionState: Sendable, Equatable {
    public enum Lifecycle: String, Codable, Sendable {
        case active
        case ended
    }

    public let id: SessionID
    public private(set) var title: String
    public private(set) var joinCode: JoinCode
    public private(set) var lifecycle: Lifecycle = .active
    /// Polls in creation order.
    public private(set) var polls: [Poll] = []
    public private(set) var openPollId: PollID?
    public private(set) var participants: Set<ParticipantID> = []
    /// False once the presenter closes the session to new participants.
    public private(set) var joiningOpen = true
    /// The current generation of the presenter and display links (0 until first rotated).
    public private(set) var linkGenerations: [SessionLink: Int] = [:]
    /// Audience Q&A.
    public internal(set) var qna = QnABoard()
    /// Whether joining needs a nickname.
    public private(set) var nicknamePolicy: NicknamePolicy = .optional
    /// Participants in the order they joined, and their nicknames (with each nickname's key,
    /// which makes "Ada" and "ADA" one nickname).
    private var joinOrder: [ParticipantID] = []
    private var joinIndex: [ParticipantID: Int] = [:]
    private var nicknames: [ParticipantID: String] = [:]
    private var nicknameKeys: [String: ParticipantID] = [:]
    /// Quiz questions: when each opened and closes (ms since 1970), what each ballot earned,
    /// and the questions a reset took out of the scores.
    private var quizTimes: [PollID: QuizWindow] = [:]
    private var quizMarks: [PollID: [ParticipantID: QuizMark]] = [:]
    private var retiredQuizPolls: Set<PollID> = []
    /// Each poll's ballots, counts and moderation.
    private var tallies: [PollID: PollTally] = [:]
    private var pollIndex: [PollID: Int] = [:]

    /// The state right after `session.created`.
    public init(created: SessionEvent.SessionCreated) {
        self.id = created.sessionId
        self.title = created.title
        self.joinCode = created.joinCode
        self.nicknamePolicy = created.nicknames ?? .optional
    }

    /// Validates a new session's title and returns its first event.
    public static func create(
        id: SessionID, title: String, joinCode: JoinCode, nicknames: NicknamePolicy? = nil, limits: SessionLimits = .init()
    ) throws(DomainError) -> SessionEvent.SessionCreated {
        let title = title.trimmingWhitespace
        guard !title.isEmpty else { throw .invalid("title must not be empty") }
        guard title.count <= limits.maxTitleLength else {
            throw .invalid("title is longer than \(limits.maxTitleLength) characters")
        }
        return .init(sessionId: id, title: title, joinCode: joinCode, nicknames: nicknames == .required ? .required : nil)
    }

    public func poll(_ id: PollID) -> Poll? {
        pollIndex[id].map { polls[$0] }
    }

    public var participantCount: Int { participants.count }

    /// A poll's results as `viewer` may see them (the presenter's by default: everything).
    public func results(of pollId: PollID, for viewer: ResultsViewer = .presenter) -> PollResults? {
        guard let poll = poll(pollId) else { return nil }
        return (tallies[pollId] ?? PollTally()).results(of: poll, for: viewer)
    }

    /// A poll's complete results, for exports: the presenter's, with every word and answer.
    public func completeResults(of pollId: PollID) -> PollResults? {
        guard let poll = poll(pollId) else { return nil }
        return (tallies[pollId] ?? PollTally()).results(of: poll, for: .presenter, complete: true)
    }

    /// Every ballot of a poll, by participant.
    public func ballots(on pollId: PollID) -> [ParticipantID: Ballot] {
        tallies[pollId]?.ballots ?? [:]
    }

    /// A page of an open poll's answers, oldest first; `next` is set when more follow.
    public func answers(
        of pollId: PollID, for viewer: ResultsViewer, after: AnswerID?, limit: Int
    ) throws(DomainError) -> (answers: [PollResults.AnswerEntry], next: AnswerID?) {
        guard let poll = poll(pollId) else { throw .notFound("no poll \(pollId) in this session") }
        guard let page = (tallies[pollId] ?? PollTally()).answerPage(of: poll, for: viewer, after: after, limit: limit) else {
            throw .invalid("after names no answer of poll \(pollId)")
        }
        return page
    }

    public func linkGeneration(_ link: SessionLink) -> Int {
        linkGenerations[link] ?? 0
    }

    public func ballot(of participant: ParticipantID, on pollId: PollID) -> Ballot? {
        tallies[pollId]?.ballot(of: participant)
    }

    // MARK: decide

    /// The events `command` causes, or why it is refused. Does not change the state.
    ///
    /// `now` is the server's clock (monotonic within a run): it times quiz questions.
    public func decide(_ command: SessionCommand, limits: SessionLimits = .init(), now: Date) throws(DomainError) -> [SessionEvent] {
        switch command {
        case .createPoll(let create):
            try requireActive()
            guard pollIndex[create.pollId] == nil else { throw .conflict("poll \(create.pollId) already exists") }
            guard polls.count < limits.maxPollsPerSession else {
                throw .limitReached("a session holds at most \(limits.maxPollsPerSession) polls")
            }
            let question = create.question.trimmingWhitespace
            guard !question.isEmpty else { throw .invalid("question must not be empty") }
            guard question.count <= limits.maxQuestionLength else {
                throw .invalid("question is longer than \(limits.maxQuestionLength) characters")
            }
            let poll = try Self.newPoll(create, question: question, limits: limits)
            var events: [SessionEvent] = [.pollCreated(.init(poll: poll))]
            if create.openImmediately {
                events += opening(poll, now: now)
            }
            return events

        case .importPolls(let creates):
            try requireActive()
            guard !creates.isEmpty else { throw .invalid("a template holds at least one poll") }
            let (events, problems) = importing(creates, limits: limits, now: now)
            if let first = problems.first {
                throw .invalid(
                    problems.count == 1
                        ? "poll \(first.position): \(first.error)"
                        : "\(problems.count) polls cannot be imported; the first, poll \(first.position): \(first.error)")
            }
            return events

        case .openPoll(let pollId):
            try requireActive()
            let poll = try existingPoll(pollId)
            switch poll.state {
            case .draft: return opening(poll, now: now)
            case .open: throw .conflict("poll \(pollId) is already open")
            case .closed: throw .conflict("poll \(pollId) is closed; create a new poll to ask again")
            }

        case .closePoll(let pollId):
            let poll = try existingPoll(pollId)
            guard poll.state == .open else { throw .conflict("poll \(pollId) is not open (it is \(poll.state.rawValue))") }
            return closing(pollId)

        case .revealPoll(let pollId):
            let poll = try existingPoll(pollId)
            guard poll.quiz == nil else { throw .conflict("a quiz question shows its results when it closes") }
            guard poll.resultsVisibility == .hidden else { throw .conflict("poll \(pollId) already shows live results") }
            guard !poll.revealed else { throw .conflict("poll \(pollId) is already revealed") }
            guard poll.state != .draft else { throw .conflict("poll \(pollId) has not been opened yet") }
            var revealed = poll
            revealed.revealed = true
            return [.pollRevealed(.init(pollId: pollId, results: results(of: pollId, for: .room)!))] + publishing(revealed)

        case .endSession:
            try requireActive()
            var events: [SessionEvent] = []
            if let open = openPollId { events += closing(open) }
            if qna.state == .open { events.append(.qnaClosed(.init())) }
            events.append(.sessionEnded(.init(sessionId: id)))
            return events

        case .join(let participant, let nickname):
            guard lifecycle == .active else { throw .gone("this session has ended; ask for the new join code") }
            guard joiningOpen else { throw .notAllowed("the presenter has closed this session to new participants") }
            guard !participants.contains(participant) else { throw .conflict("participant already joined") }
            guard participants.count < limits.maxParticipantsPerSession else {
                throw .limitReached("this session is full (\(limits.maxParticipantsPerSession) participants)")
            }
            let name = try nickname.map { raw throws(DomainError) in try checkedNickname(raw, limits: limits) }
            if name == nil, nicknamePolicy == .required { throw .invalid("this session asks for a nickname") }
            return [.participantJoined(.init(participantId: participant, participantCount: participants.count + 1, nickname: name))]

        case .setNicknames(let policy):
            try requireActive()
            // Setting what is set already changes nothing (a double click, a second presenter).
            return policy == nicknamePolicy ? [] : [.nicknamesChanged(.init(nicknames: policy))]

        case .resetScores:
            try requireActive()
            if let open = openPollId, poll(open)?.quiz != nil {
                throw .conflict("a quiz question is open; close it before resetting the scores")
            }
            let scored = scoredQuizPolls(closing: nil)
            // Nothing scored since the last reset: already a fresh round.
            guard !scored.isEmpty else { return [] }
            var after = self
            after.apply(.quizReset(.init(pollIds: scored)))
            let standings = after.standings()
            return [
                .quizReset(.init(pollIds: scored)),
                .quizLeaderboard(.init(pollId: nil, players: standings.rows.count, entries: standings.entries(top: Standings.topCount))),
            ]

        case .setJoining(let open):
            try requireActive()
            guard joiningOpen != open else { throw .conflict(open ? "joining is already open" : "joining is already closed") }
            return [.joiningChanged(.init(joiningOpen: open))]

        case .rotateLink(let link):
            return [.linkRotated(.init(link: link, generation: linkGeneration(link) + 1))]

        case .vote(let participant, let pollId, let input):
            guard participants.contains(participant) else { throw .notFound("participant is not part of this session") }
            let poll = try existingPoll(pollId)
            guard poll.state == .open else {
                throw .conflict(poll.state == .draft ? "poll \(pollId) is not open yet" : "poll \(pollId) is closed")
            }
            let ballot = try self.ballot(from: input, by: participant, on: poll, limits: limits)
            let mark = try marking(ballot, by: participant, on: poll, now: now)
            var events: [SessionEvent] = [.ballotCast(.init(pollId: pollId, participantId: participant, ballot: ballot, quiz: mark))]
            // An answer the presenter hid stays hidden when its writer replaces it: the new one
            // is hidden in the same commit.
            if case .answers(let now) = ballot, let newest = now.last, let tally = tallies[pollId],
                case .answers(let before) = tally.ballot(of: participant)
            {
                let kept = Set(now.map(\.answerId))
                if before.contains(where: { !kept.contains($0.answerId) && tally.hiddenAnswers.contains($0.answerId) }) {
                    events.append(.pollModerated(.init(pollId: pollId, entry: .answer, target: newest.answerId, action: .hide)))
                }
            }
            return events

        case .moderate(let pollId, let action):
            let poll = try existingPoll(pollId)
            let moderated = try moderating(poll, action)
            // Hidden entries leave the room's screens at once: results follow in the same commit,
            // computed as if the moderation were applied.
            var after = self
            for event in moderated { after.apply(event) }
            return moderated + after.publishing(poll)

        case .publishResults(let pollId):
            return publishing(try existingPoll(pollId))

        case .qna(let command):
            if case .ask(let participant, _, _, _, _) = command, !participants.contains(participant) {
                throw .notFound("participant is not part of this session")
            }
            if case .open = command { try requireActive() }
            if case .ask = command { try requireActive() }
            if case .withdraw = command { try requireActive() }
            return try qna.decide(command, limits: limits)
        }
    }

    private func requireActive() throws(DomainError) {
        guard lifecycle == .active else { throw .conflict("session has ended") }
    }

    private func existingPoll(_ id: PollID) throws(DomainError) -> Poll {
        guard let poll = poll(id) else { throw .notFound("no poll \(id) in this session") }
        return poll
    }

    /// Opening a poll closes the one that was open: at most one poll is open per session. A quiz
    /// question records when it opened and when the server closes it.
    private func opening(_ poll: Poll, now: Date) -> [SessionEvent] {
        var events: [SessionEvent] = []
        if let open = openPollId, open != poll.id { events += closing(open) }
        var opened = poll
        opened.state = .open
        if let quiz = poll.quiz {
            let at = EventTime.milliseconds(now)
            opened.openedAt = EventTime.format(at)
            opened.closesAt = EventTime.format(at + Int64(quiz.timeLimitSeconds) * 1000)
        }
        events.append(.pollOpened(.init(poll: opened)))
        return events
    }

    /// Closing a quiz question scores it in the same commit: the right answers and the
    /// distribution, the leaderboard, and each participant's own result.
    private func closing(_ pollId: PollID) -> [SessionEvent] {
        let closed: SessionEvent = .pollClosed(.init(pollId: pollId))
        guard let poll = poll(pollId), let quiz = poll.quiz else { return [closed] }
        var after = self
        after.apply(closed)
        let standings = after.standings()
        let marks = quizMarks[pollId] ?? [:]
        var events: [SessionEvent] = [
            closed,
            .quizResults(
                .init(
                    pollId: pollId, correctOptionIds: quiz.correctOptionIds ?? [], results: after.results(of: pollId, for: .room)!,
                    answered: marks.count, correct: marks.values.count(where: \.correct))),
            .quizLeaderboard(.init(pollId: pollId, players: standings.rows.count, entries: standings.entries(top: Standings.topCount))),
        ]
        events.reserveCapacity(events.count + standings.rows.count)
        for participant in joinOrder {
            guard let row = standings.row(of: participant) else { continue }
            let mark = marks[participant]
            events.append(
                .quizScore(
                    .init(
                        participantId: participant, pollId: pollId, answered: mark != nil, correct: mark?.correct ?? false,
                        points: mark?.points ?? 0, total: row.score, rank: row.rank, players: standings.rows.count)))
        }
        return events
    }

    /// The current results as events: one for everyone, or — when a written poll holds entries
    /// the room may not see — the presenter's and the room's apart. Until a hidden poll is
    /// revealed the room gets only the turnout.
    private func publishing(_ poll: Poll) -> [SessionEvent] {
        let tally = tallies[poll.id] ?? PollTally()
        let full = tally.results(of: poll, for: .presenter)
        let visible = poll.resultsVisibleToParticipants
        let room = poll.kind.isWritten ? tally.results(of: poll, for: .room) : full
        var events: [SessionEvent]
        if room == full {
            events = [.pollResults(.init(results: full, visibleToParticipants: visible))]
        } else {
            events = [.pollResults(.init(results: full, visibleToParticipants: visible, viewer: .presenter))]
            if visible { events.append(.pollResults(.init(results: room, visibleToParticipants: true, viewer: .room))) }
        }
        if !visible { events.append(.pollBallots(.init(pollId: poll.id, totalBallots: full.totalBallots))) }
        return events
    }

    // MARK: new polls

    /// Checks a new poll's kind-specific part and builds it (as a draft).
    private static func newPoll(_ create: SessionCommand.CreatePoll, question: String, limits: SessionLimits) throws(DomainError) -> Poll {
        let kind = create.kind
        func refuse(_ field: String, _ value: (some Any)?) throws(DomainError) {
            if value != nil { throw .invalid("\(field) does not apply to a \(kind.rawValue) poll") }
        }
        if kind != .scale { try refuse("scale", create.scale) }
        if kind != .wordcloud { try refuse("maxWords", create.maxWords) }
        if kind != .open {
            try refuse("maxAnswers", create.maxAnswers)
            try refuse("moderation", create.moderation)
        }
        var options: [PollOption] = []
        if kind.hasOptions {
            options = try optionList(create.options, limits: limits)
        } else if !create.options.isEmpty {
            throw .invalid("a \(kind.rawValue) poll has no options")
        }
        var poll = Poll(id: create.pollId, question: question, options: options, kind: kind, resultsVisibility: create.resultsVisibility)
        switch kind {
        case .single, .multiple:
            break
        case .ranking:
            break
        case .scale:
            guard let scale = create.scale else { throw .invalid("a scale poll needs \"scale\": {\"min\": 0 or 1, \"max\": 2 to 10}") }
            guard scale.min == 0 || scale.min == 1 else { throw .invalid("scale.min must be 0 or 1, got \(scale.min)") }
            guard (2...10).contains(scale.max) else { throw .invalid("scale.max must be 2 to 10, got \(scale.max)") }
            var tidy = ScaleSettings(min: scale.min, max: scale.max)
            for (name, label) in [("minLabel", scale.minLabel), ("maxLabel", scale.maxLabel)] {
                guard let label else { continue }
                let text = WrittenText.tidy(label)
                guard !text.isEmpty else { throw .invalid("scale.\(name) must not be empty (leave it out instead)") }
                guard text.count <= limits.maxScaleLabelLength, text.utf8.count <= 4 * limits.maxScaleLabelLength else {
                    throw .invalid("scale.\(name) is longer than \(limits.maxScaleLabelLength) characters")
                }
                if name == "minLabel" { tidy.minLabel = text } else { tidy.maxLabel = text }
            }
            poll.scale = tidy
        case .wordcloud:
            let maxWords = create.maxWords ?? 3
            guard (1...3).contains(maxWords) else { throw .invalid("maxWords must be 1 to 3, got \(maxWords)") }
            poll.maxWords = maxWords
        case .open:
            let maxAnswers = create.maxAnswers ?? 1
            guard (1...5).contains(maxAnswers) else { throw .invalid("maxAnswers must be 1 to 5, got \(maxAnswers)") }
            poll.maxAnswers = maxAnswers
            poll.moderation = create.moderation ?? .post
        }
        if let quiz = create.quiz { poll = try quizQuestion(poll, quiz) }
        return poll
    }

    /// A choice poll with right answers, a time limit and points. Its results stay hidden from
    /// the room until it closes (then `quiz.results` shows them to everyone).
    private static func quizQuestion(_ poll: Poll, _ quiz: QuizSettings) throws(DomainError) -> Poll {
        guard poll.kind == .single || poll.kind == .multiple else {
            throw .invalid("quiz applies to single and multiple polls, not \(poll.kind.rawValue)")
        }
        let correct = quiz.correctOptionIds ?? []
        guard !correct.isEmpty else { throw .invalid("quiz.correctOptionIds must name at least one right option") }
        guard Set(correct).count == correct.count else { throw .invalid("quiz.correctOptionIds names an option twice") }
        if let unknown = correct.first(where: { id in !poll.options.contains { $0.id == id } }) {
            throw .invalid("quiz.correctOptionIds names \(unknown), which is not an option (they are o1 to o\(poll.options.count))")
        }
        guard QuizSettings.timeLimits.contains(quiz.timeLimitSeconds) else {
            throw .invalid("quiz.timeLimitSeconds must be 5 to 300, got \(quiz.timeLimitSeconds)")
        }
        guard QuizSettings.pointRange.contains(quiz.points) else {
            throw .invalid("quiz.points must be 1 to 10000, got \(quiz.points)")
        }
        var question = poll
        question.quiz = quiz
        question.resultsVisibility = .hidden
        return question
    }

    // MARK: quiz

    private struct QuizWindow: Equatable {
        var opened: Int64
        var closes: Int64
    }

    /// A quiz ballot's mark: refused once time is up or when the participant has answered
    /// already; right or wrong, and its points, from the time since the opening.
    private func marking(_ ballot: Ballot, by participant: ParticipantID, on poll: Poll, now: Date) throws(DomainError) -> QuizMark? {
        guard let quiz = poll.quiz, case .choice(let chosen) = ballot else { return nil }
        guard let times = quizTimes[poll.id] else {
            throw .conflict("question \(poll.id) has no opening time; ask the presenter to reopen it")
        }
        let at = EventTime.milliseconds(now)
        guard at <= times.closes else {
            throw .conflict("time is up: question \(poll.id) closed at \(EventTime.format(times.closes))")
        }
        guard quizMarks[poll.id]?[participant] == nil else { throw .conflict("answers in a quiz are final") }
        let elapsed = max(0, at - times.opened)
        let correct = quiz.isCorrect(chosen, kind: poll.kind)
        return QuizMark(correct: correct, points: correct ? quiz.points(afterMilliseconds: elapsed) : 0, elapsedMs: elapsed)
    }

    /// Quiz questions that count: closed (or closing now), and not taken out by a reset.
    private func scoredQuizPolls(closing: PollID?) -> [PollID] {
        polls.filter { $0.quiz != nil && ($0.state == .closed || $0.id == closing) && !retiredQuizPolls.contains($0.id) }.map(\.id)
    }

    /// Every participant's standing, best first. Points count once their question has closed,
    /// so the leaderboard never shows who was right before everyone can know.
    public func standings() -> Standings {
        var totals: [ParticipantID: Int] = [:]
        // When a player reached their score: the moment (on the server's clock) their last
        // points were earned — the question's opening plus how fast they answered.
        var reached: [ParticipantID: Int64] = [:]
        for pollId in scoredQuizPolls(closing: nil) {
            guard let marks = quizMarks[pollId], let opened = quizTimes[pollId]?.opened else { continue }
            for (participant, mark) in marks where mark.points > 0 {
                totals[participant, default: 0] += mark.points
                reached[participant] = max(reached[participant] ?? .min, opened + mark.elapsedMs)
            }
        }
        let order = joinOrder.sorted { a, b in
            let (sa, sb) = (totals[a] ?? 0, totals[b] ?? 0)
            if sa != sb { return sa > sb }
            switch (reached[a], reached[b]) {
            case (let ra?, let rb?) where ra != rb: return ra < rb
            default: return joinIndex[a]! < joinIndex[b]!
            }
        }
        var rows: [Standings.Row] = []
        rows.reserveCapacity(order.count)
        for (i, participant) in order.enumerated() {
            let score = totals[participant] ?? 0
            // Ties share the rank of the first of them.
            let rank = i > 0 && rows[i - 1].score == score ? rows[i - 1].rank : i + 1
            rows.append(.init(participant: participant, nickname: displayName(participant), score: score, rank: rank))
        }
        return Standings(rows: rows)
    }

    /// The name a participant shows on the leaderboard: their nickname, or "Player N" by the
    /// order they joined in.
    public func displayName(_ participant: ParticipantID) -> String {
        nicknames[participant] ?? "Player \((joinIndex[participant] ?? 0) + 1)"
    }

    public func nickname(of participant: ParticipantID) -> String? { nicknames[participant] }

    /// Whether a closed quiz question still counts toward the scores (no reset since).
    public func countsTowardScores(_ pollId: PollID) -> Bool {
        !retiredQuizPolls.contains(pollId)
    }

    /// Whether the session has quiz questions (then it has a leaderboard).
    public var hasQuiz: Bool { polls.contains { $0.quiz != nil } }

    /// The leaderboard as `role` may see it: all of it for the presenter and displays (or the top
    /// `top`), the top ten and their own row for a participant.
    public func leaderboard(for role: Role, participant: ParticipantID? = nil, top: Int? = nil) -> LeaderboardView {
        let standings = standings()
        let limit = role == .participant ? Standings.topCount : top
        let me = participant.flatMap { standings.row(of: $0) }.map {
            LeaderboardEntry(nickname: $0.nickname, score: $0.score, rank: $0.rank)
        }
        return LeaderboardView(players: standings.rows.count, entries: standings.entries(top: limit), me: role == .participant ? me : nil)
    }

    /// What a participant's ballot on a quiz question earned.
    public func quizMark(of participant: ParticipantID, on pollId: PollID) -> QuizMark? {
        quizMarks[pollId]?[participant]
    }

    /// When the most recent quiz question opened (ms since 1970).
    public var newestQuizOpening: Int64? { quizTimes.values.map(\.opened).max() }

    /// When an open quiz question closes (ms since 1970), for the server's timer.
    public func closesAt(_ pollId: PollID) -> Int64? {
        quizTimes[pollId]?.closes
    }

    /// A nickname, tidied and checked: 1 to 20 characters, nothing invisible or blocked, not
    /// taken (compared without case or width).
    private func checkedNickname(_ raw: String, limits: SessionLimits) throws(DomainError) -> String {
        let name = try Self.written(raw, what: "the nickname", max: limits.maxNicknameLength)
        let key = WrittenText.key(name)
        guard !key.isEmpty else { throw .invalid("the nickname has nothing to show") }
        guard !limits.blocklist.matches(name) else { throw .invalid("this nickname is not allowed here; choose another") }
        // "Player 3" is how the leaderboard names a player without a nickname: nobody may take it.
        let letters = key.filter { $0.isLetter || $0.isNumber }
        if letters.hasPrefix("player"), letters.dropFirst(6).allSatisfy(\.isNumber) {
            throw .invalid("\"\(name)\" is how players without a nickname are shown; choose another")
        }
        guard nicknameKeys[key] == nil else { throw .conflict("the nickname \"\(name)\" is taken; choose another") }
        return name
    }

    /// Whether `nickname` would be accepted now (the join page's check before a participant
    /// is made; the join itself checks again under the session's lock).
    public func check(nickname: String, limits: SessionLimits) throws(DomainError) {
        _ = try checkedNickname(nickname, limits: limits)
    }

    private static func optionList(_ raw: [String], limits: SessionLimits) throws(DomainError) -> [PollOption] {
        guard raw.count >= limits.minOptions, raw.count <= limits.maxOptions else {
            throw .invalid("a poll has \(limits.minOptions) to \(limits.maxOptions) options, got \(raw.count)")
        }
        var labels: [String] = []
        for (index, option) in raw.enumerated() {
            let label = option.trimmingWhitespace
            guard !label.isEmpty else { throw .invalid("option \(index + 1) is empty") }
            guard label.count <= limits.maxOptionLength else {
                throw .invalid("option \(index + 1) is longer than \(limits.maxOptionLength) characters")
            }
            guard !labels.contains(label) else { throw .invalid("option \"\(label)\" appears twice") }
            labels.append(label)
        }
        return labels.enumerated().map { PollOption(id: "o\($0.offset + 1)", label: $0.element) }
    }

    // MARK: ballots

    /// Checks what a participant sent against the poll and makes it a ballot.
    private func ballot(
        from input: BallotInput, by participant: ParticipantID, on poll: Poll, limits: SessionLimits
    ) throws(DomainError) -> Ballot {
        let known = Set(poll.options.map(\.id))
        switch (poll.kind, input) {
        case (.single, .options(let ids)), (.multiple, .options(let ids)):
            guard !ids.isEmpty else { throw .invalid("choose at least one option") }
            if poll.kind == .single, ids.count != 1 {
                throw .invalid("this poll takes exactly one option, got \(ids.count)")
            }
            guard Set(ids).count == ids.count else { throw .invalid("an option is chosen twice") }
            if let unknown = ids.first(where: { !known.contains($0) }) { throw .invalid("poll \(poll.id) has no option \(unknown)") }
            return .choice(ids)

        case (.scale, .value(let value)):
            let range = poll.scale?.values ?? 1...5
            guard range.contains(value) else { throw .invalid("value must be \(range.lowerBound) to \(range.upperBound), got \(value)") }
            return .scale(value)

        case (.ranking, .ranking(let ids)):
            if let unknown = ids.first(where: { !known.contains($0) }) { throw .invalid("poll \(poll.id) has no option \(unknown)") }
            var seen: Set<OptionID> = []
            if let twice = ids.first(where: { !seen.insert($0).inserted }) { throw .invalid("option \(twice) is ranked twice") }
            if let missing = poll.options.first(where: { !seen.contains($0.id) }) {
                throw .invalid("a ranking puts every option in order; \(missing.id) is missing")
            }
            return .ranking(ids)

        case (.wordcloud, .words(let raw)):
            let maxWords = poll.maxWords ?? 3
            guard !raw.isEmpty else { throw .invalid("send at least one word") }
            guard raw.count <= maxWords else { throw .invalid("this poll takes at most \(maxWords) words, got \(raw.count)") }
            var words: [Ballot.Word] = []
            for (index, entry) in raw.enumerated() {
                let text = try Self.written(entry, what: "word \(index + 1)", max: limits.maxWordLength)
                let key = WrittenText.key(text)
                guard !key.isEmpty else { throw .invalid("word \(index + 1) has nothing to show (only marks or invisible characters)") }
                // Two spellings of one word in one ballot count once.
                guard !words.contains(where: { $0.key == key }) else { continue }
                words.append(.init(text: text, key: key, blocked: limits.blocklist.matches(text)))
            }
            return .words(words)

        case (.open, .text(let raw, let answerId, let replacing)):
            let text = try Self.written(raw, what: "the answer", max: limits.maxAnswerLength)
            let tally = tallies[poll.id] ?? PollTally()
            var mine: [Ballot.Answer] = []
            if case .answers(let list) = tally.ballot(of: participant) { mine = list }
            guard tally.answer(answerId) == nil else { throw .conflict("answer \(answerId) exists already") }
            let answer = Ballot.Answer(
                answerId: answerId, number: tally.nextAnswerNumber, text: text, blocked: limits.blocklist.matches(text))
            let maxAnswers = poll.maxAnswers ?? 1
            if let replacing {
                guard let index = mine.firstIndex(where: { $0.answerId == replacing }) else {
                    throw .notFound("you have no answer \(replacing) on this poll")
                }
                mine.remove(at: index)
            } else if maxAnswers == 1 {
                // One answer each: a new one replaces it, like a ballot.
                mine.removeAll()
            } else if mine.count >= maxAnswers {
                throw .conflict("this poll takes at most \(maxAnswers) answers from each participant; replace one instead")
            }
            return .answers(mine + [answer])

        case (_, let other):
            let expected =
                switch poll.kind {
                case .single, .multiple: "{\"optionIds\": [...]}"
                case .scale: "{\"value\": n}"
                case .ranking: "{\"ranking\": [every optionId, best first]}"
                case .wordcloud: "{\"words\": [\"...\"]}"
                case .open: "{\"text\": \"...\"}"
                }
            throw .invalid("this is a \(poll.kind.rawValue) poll: send \(expected), not \(other.field)")
        }
    }

    /// A word or an answer, tidied and checked: not empty, not too long (in characters, and in
    /// bytes so one "character" piled with combining marks cannot fill a screen), no control
    /// characters.
    static func written(_ raw: String, what: String, max: Int) throws(DomainError) -> String {
        // Cheap first: no tidying of kilobytes under the session's lock.
        guard raw.utf8.count <= 16 * max else { throw .invalid("\(what) is longer than \(max) characters") }
        let text = WrittenText.tidy(raw)
        guard !text.isEmpty else { throw .invalid("\(what) is empty") }
        guard text.count <= max else { throw .invalid("\(what) is longer than \(max) characters") }
        guard text.unicodeScalars.count <= 2 * max, text.utf8.count <= 4 * max else {
            throw .invalid("\(what) is too long: at most \(max) characters of ordinary text")
        }
        guard !WrittenText.hasControlCharacters(text) else { throw .invalid("\(what) contains control characters") }
        return text
    }

    // MARK: moderation

    private func moderating(_ poll: Poll, _ action: ModerationAction) throws(DomainError) -> [SessionEvent] {
        let tally = tallies[poll.id] ?? PollTally()
        func event(_ entry: SessionEvent.PollModerated.Entry, _ target: String, _ action: SessionEvent.PollModerated.Action)
            -> [SessionEvent]
        {
            [.pollModerated(.init(pollId: poll.id, entry: entry, target: target, action: action))]
        }
        switch action {
        case .hideWord(let text), .unhideWord(let text):
            guard poll.kind == .wordcloud else { throw .invalid("poll \(poll.id) is not a word cloud") }
            let key = WrittenText.key(text)
            guard !key.isEmpty else { throw .invalid("text is empty") }
            let hide = action == .hideWord(text)
            guard hide ? tally.hasWord(key) : tally.hiddenWords.contains(key) else {
                throw hide ? .notFound("nobody has sent \"\(text)\" on this poll") : .conflict("\"\(text)\" is not hidden")
            }
            guard !hide || !tally.hiddenWords.contains(key) else { throw .conflict("\"\(text)\" is hidden already") }
            return event(.word, key, hide ? .hide : .unhide)
        case .hideAnswer(let id), .unhideAnswer(let id), .approveAnswer(let id):
            guard poll.kind == .open else { throw .invalid("poll \(poll.id) is not an open poll") }
            guard tally.answer(id) != nil else { throw .notFound("poll \(poll.id) has no answer \(id)") }
            switch action {
            case .hideAnswer:
                guard !tally.hiddenAnswers.contains(id) else { throw .conflict("answer \(id) is hidden already") }
                return event(.answer, id, .hide)
            case .unhideAnswer:
                guard tally.hiddenAnswers.contains(id) else { throw .conflict("answer \(id) is not hidden") }
                return event(.answer, id, .unhide)
            default:
                guard poll.premoderated else { throw .conflict("poll \(poll.id) shows answers without approval") }
                guard !tally.approvedAnswers.contains(id) else { throw .conflict("answer \(id) is approved already") }
                return event(.answer, id, .approve)
            }
        }
    }

    // MARK: apply

    /// Folds one event into the state. Events come from `decide` or from the log; both were
    /// validated when first decided, so `apply` does not re-check rules.
    public mutating func apply(_ event: SessionEvent) {
        switch event {
        case .sessionCreated:
            break
        case .sessionEnded:
            lifecycle = .ended
        case .pollCreated(let p):
            pollIndex[p.poll.id] = polls.count
            polls.append(p.poll)
            tallies[p.poll.id] = PollTally()
        case .pollOpened(let p):
            guard let i = pollIndex[p.poll.id] else { return }
            polls[i].state = .open
            polls[i].openedAt = p.poll.openedAt
            polls[i].closesAt = p.poll.closesAt
            if let opened = p.poll.openedAt.flatMap(EventTime.parse), let closes = p.poll.closesAt.flatMap(EventTime.parse) {
                quizTimes[p.poll.id] = QuizWindow(opened: opened, closes: closes)
            }
            openPollId = p.poll.id
        case .pollClosed(let p):
            guard let i = pollIndex[p.pollId] else { return }
            polls[i].state = .closed
            // A quiz question's results (and right answers) are everyone's once it closes.
            if polls[i].quiz != nil { polls[i].revealed = true }
            if openPollId == p.pollId { openPollId = nil }
        case .pollRevealed(let p):
            guard let i = pollIndex[p.pollId] else { return }
            polls[i].revealed = true
        case .pollResults, .pollBallots:
            break
        case .participantJoined(let p):
            guard participants.insert(p.participantId).inserted else { return }
            joinIndex[p.participantId] = joinOrder.count
            joinOrder.append(p.participantId)
            if let name = p.nickname {
                nicknames[p.participantId] = name
                nicknameKeys[WrittenText.key(name)] = p.participantId
            }
        case .joiningChanged(let j):
            joiningOpen = j.joiningOpen
        case .linkRotated(let r):
            linkGenerations[r.link] = r.generation
        case .ballotCast(let b):
            tallies[b.pollId, default: PollTally()].cast(b.ballot, by: b.participantId)
            if let mark = b.quiz { quizMarks[b.pollId, default: [:]][b.participantId] = mark }
        case .pollModerated(let m):
            switch (m.entry, m.action) {
            case (.word, .hide), (.word, .unhide): tallies[m.pollId, default: PollTally()].setWord(m.target, hidden: m.action == .hide)
            case (.answer, .hide), (.answer, .unhide):
                tallies[m.pollId, default: PollTally()].setAnswer(m.target, hidden: m.action == .hide)
            case (.answer, .approve): tallies[m.pollId, default: PollTally()].approveAnswer(m.target)
            case (.word, .approve): break
            }
        case .qnaOpened, .qnaClosed, .questionAsked, .questionApproved, .questionHidden, .questionAnswered, .questionHighlighted,
            .questionWithdrawn, .questionUpvoted, .questionUpvotes:
            qna.apply(event)
        case .quizResults, .quizLeaderboard, .quizScore:
            break
        case .quizReset(let r):
            retiredQuizPolls.formUnion(r.pollIds)
        case .nicknamesChanged(let n):
            nicknamePolicy = n.nicknames
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
