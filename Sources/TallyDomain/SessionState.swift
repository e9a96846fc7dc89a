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
    /// ballots[poll][participant] = chosen option ids.
    public private(set) var ballots: [PollID: [ParticipantID: [OptionID]]] = [:]
    /// counts[poll][option], kept incrementally so results are O(options), not O(ballots).
    private var counts: [PollID: [OptionID: Int]] = [:]
    private var pollIndex: [PollID: Int] = [:]

    /// The state right after `session.created`.
    public init(created: SessionEvent.SessionCreated) {
        self.id = created.sessionId
        self.title = created.title
        self.joinCode = created.joinCode
    }

    /// Validates a new session's title and returns its first event.
    public static func create(
        id: SessionID, title: String, joinCode: JoinCode, limits: SessionLimits = .init()
    ) throws(DomainError) -> SessionEvent.SessionCreated {
        let title = title.trimmingWhitespace
        guard !title.isEmpty else { throw .invalid("title must not be empty") }
        guard title.count <= limits.maxTitleLength else {
            throw .invalid("title is longer than \(limits.maxTitleLength) characters")
        }
        return .init(sessionId: id, title: title, joinCode: joinCode)
    }

    public func poll(_ id: PollID) -> Poll? {
        pollIndex[id].map { polls[$0] }
    }

    public var participantCount: Int { participants.count }

    public func results(of pollId: PollID) -> PollResults? {
        guard let poll = poll(pollId) else { return nil }
        let perOption = counts[pollId] ?? [:]
        return PollResults(
            pollId: pollId,
            counts: poll.options.map { .init(optionId: $0.id, count: perOption[$0.id] ?? 0) },
            totalBallots: ballots[pollId]?.count ?? 0
        )
    }

    public func linkGeneration(_ link: SessionLink) -> Int {
        linkGenerations[link] ?? 0
    }

    public func ballot(of participant: ParticipantID, on pollId: PollID) -> [OptionID]? {
        ballots[pollId]?[participant]
    }

    // MARK: decide

    /// The events `command` causes, or why it is refused. Does not change the state.
    public func decide(_ command: SessionCommand, limits: SessionLimits = .init()) throws(DomainError) -> [SessionEvent] {
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
            guard create.options.count >= limits.minOptions, create.options.count <= limits.maxOptions else {
                throw .invalid("a poll has \(limits.minOptions) to \(limits.maxOptions) options, got \(create.options.count)")
            }
            var labels: [String] = []
            for (index, raw) in create.options.enumerated() {
                let label = raw.trimmingWhitespace
                guard !label.isEmpty else { throw .invalid("option \(index + 1) is empty") }
                guard label.count <= limits.maxOptionLength else {
                    throw .invalid("option \(index + 1) is longer than \(limits.maxOptionLength) characters")
                }
                guard !labels.contains(label) else { throw .invalid("option \"\(label)\" appears twice") }
                labels.append(label)
            }
            let poll = Poll(
                id: create.pollId, question: question,
                options: labels.enumerated().map { PollOption(id: "o\($0.offset + 1)", label: $0.element) },
                kind: create.kind, resultsVisibility: create.resultsVisibility
            )
            var events: [SessionEvent] = [.pollCreated(.init(poll: poll))]
            if create.openImmediately {
                events += opening(poll)
            }
            return events

        case .openPoll(let pollId):
            try requireActive()
            let poll = try existingPoll(pollId)
            switch poll.state {
            case .draft: return opening(poll)
            case .open: throw .conflict("poll \(pollId) is already open")
            case .closed: throw .conflict("poll \(pollId) is closed; create a new poll to ask again")
            }

        case .closePoll(let pollId):
            let poll = try existingPoll(pollId)
            guard poll.state == .open else { throw .conflict("poll \(pollId) is not open (it is \(poll.state.rawValue))") }
            return closing(pollId)

        case .revealPoll(let pollId):
            let poll = try existingPoll(pollId)
            guard poll.resultsVisibility == .hidden else { throw .conflict("poll \(pollId) already shows live results") }
            guard !poll.revealed else { throw .conflict("poll \(pollId) is already revealed") }
            guard poll.state != .draft else { throw .conflict("poll \(pollId) has not been opened yet") }
            let results = results(of: pollId)!
            return [
                .pollRevealed(.init(pollId: pollId, results: results)),
                .pollResults(.init(results: results, visibleToParticipants: true)),
            ]

        case .endSession:
            try requireActive()
            var events: [SessionEvent] = []
            if let open = openPollId { events += closing(open) }
            events.append(.sessionEnded(.init(sessionId: id)))
            return events

        case .join(let participant):
            guard lifecycle == .active else { throw .gone("this session has ended; ask for the new join code") }
            guard joiningOpen else { throw .notAllowed("the presenter has closed this session to new participants") }
            guard !participants.contains(participant) else { throw .conflict("participant already joined") }
            guard participants.count < limits.maxParticipantsPerSession else {
                throw .limitReached("this session is full (\(limits.maxParticipantsPerSession) participants)")
            }
            return [.participantJoined(.init(participantId: participant, participantCount: participants.count + 1))]

        case .setJoining(let open):
            try requireActive()
            guard joiningOpen != open else { throw .conflict(open ? "joining is already open" : "joining is already closed") }
            return [.joiningChanged(.init(joiningOpen: open))]

        case .rotateLink(let link):
            return [.linkRotated(.init(link: link, generation: linkGeneration(link) + 1))]

        case .vote(let participant, let pollId, let optionIds):
            guard participants.contains(participant) else { throw .notFound("participant is not part of this session") }
            let poll = try existingPoll(pollId)
            guard poll.state == .open else {
                throw .conflict(poll.state == .draft ? "poll \(pollId) is not open yet" : "poll \(pollId) is closed")
            }
            guard !optionIds.isEmpty else { throw .invalid("choose at least one option") }
            if poll.kind == .single, optionIds.count != 1 {
                throw .invalid("this poll takes exactly one option, got \(optionIds.count)")
            }
            guard Set(optionIds).count == optionIds.count else { throw .invalid("an option is chosen twice") }
            let known = Set(poll.options.map(\.id))
            if let unknown = optionIds.first(where: { !known.contains($0) }) {
                throw .invalid("poll \(pollId) has no option \(unknown)")
            }
            return [.ballotCast(.init(pollId: pollId, participantId: participant, optionIds: optionIds))]

        case .publishResults(let pollId):
            let poll = try existingPoll(pollId)
            let results = results(of: pollId)!
            let published = SessionEvent.pollResults(.init(results: results, visibleToParticipants: poll.resultsVisibleToParticipants))
            guard !poll.resultsVisibleToParticipants else { return [published] }
            // Hidden until the reveal: counts for the presenter, only the turnout for the room.
            return [published, .pollBallots(.init(pollId: pollId, totalBallots: results.totalBallots))]
        }
    }

    private func requireActive() throws(DomainError) {
        guard lifecycle == .active else { throw .conflict("session has ended") }
    }

    private func existingPoll(_ id: PollID) throws(DomainError) -> Poll {
        guard let poll = poll(id) else { throw .notFound("no poll \(id) in this session") }
        return poll
    }

    /// Opening a poll closes the one that was open: at most one poll is open per session.
    private func opening(_ poll: Poll) -> [SessionEvent] {
        var events: [SessionEvent] = []
        if let open = openPollId, open != poll.id { events += closing(open) }
        var opened = poll
        opened.state = .open
        events.append(.pollOpened(.init(poll: opened)))
        return events
    }

    private func closing(_ pollId: PollID) -> [SessionEvent] {
        [.pollClosed(.init(pollId: pollId))]
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
            counts[p.poll.id] = [:]
        case .pollOpened(let p):
            guard let i = pollIndex[p.poll.id] else { return }
            polls[i].state = .open
            openPollId = p.poll.id
        case .pollClosed(let p):
            guard let i = pollIndex[p.pollId] else { return }
            polls[i].state = .closed
            if openPollId == p.pollId { openPollId = nil }
        case .pollRevealed(let p):
            guard let i = pollIndex[p.pollId] else { return }
            polls[i].revealed = true
        case .pollResults, .pollBallots:
            break
        case .participantJoined(let p):
            participants.insert(p.participantId)
        case .joiningChanged(let j):
            joiningOpen = j.joiningOpen
        case .linkRotated(let r):
            linkGenerations[r.link] = r.generation
        case .ballotCast(let b):
            var perOption = counts[b.pollId] ?? [:]
            if let previous = ballots[b.pollId]?[b.participantId] {
                for option in previous { perOption[option, default: 0] -= 1 }
            }
            for option in b.optionIds { perOption[option, default: 0] += 1 }
            counts[b.pollId] = perOption
            ballots[b.pollId, default: [:]][b.participantId] = b.optionIds
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
