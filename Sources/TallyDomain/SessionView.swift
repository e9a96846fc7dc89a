/// What one role may see of a session: the body of `GET /api/v1/sessions/{id}` and of the
/// `stream.reset` event. Built from the same rules as event routing (`SessionEvent.audience`).
public struct SessionView: Codable, Sendable, Equatable {
    public struct PollView: Codable, Sendable, Equatable {
        public var poll: Poll
        /// Absent when the viewer may not see counts: a hidden poll before its reveal, for
        /// anyone but the presenter.
        public var results: PollResults?
        /// Ballots cast so far; every role may know the turnout (absent for drafts' viewers
        /// who see no drafts anyway).
        public var totalBallots: Int
        /// The viewer's own ballot (participants only): the chosen options of a choice poll,
        /// the order of a ranking …
        public var myBallot: [OptionID]?
        /// … the value of a scale …
        public var myValue: Int?
        /// … the words of a word cloud …
        public var myWords: [String]?
        /// … or their answers to an open poll, oldest first. What moderation did to them is not
        /// said: a blocked answer looks accepted to its writer.
        public var myAnswers: [MyAnswer]?
        /// A closed quiz question: whether the participant's answer was right, and its points.
        public var myQuiz: MyQuiz?

        public struct MyQuiz: Codable, Sendable, Equatable {
            public var correct: Bool
            public var points: Int
        }

        public struct MyAnswer: Codable, Sendable, Equatable {
            public var answerId: AnswerID
            public var text: String
            public init(answerId: AnswerID, text: String) {
                self.answerId = answerId
                self.text = text
            }
        }

        init(poll: Poll, results: PollResults?, totalBallots: Int, mine: Ballot?, mark: QuizMark? = nil) {
            self.poll = poll
            if poll.state == .closed, let mark { myQuiz = MyQuiz(correct: mark.correct, points: mark.points) }
            self.results = results
            self.totalBallots = totalBallots
            switch mine {
            case .choice(let ids), .ranking(let ids): myBallot = ids
            case .scale(let value): myValue = value
            case .words(let words): myWords = words.map(\.text)
            case .answers(let answers): myAnswers = answers.map { MyAnswer(answerId: $0.answerId, text: $0.text) }
            case nil: break
            }
        }
    }

    public var sessionId: SessionID
    public var title: String
    public var joinCode: String
    public var state: SessionState.Lifecycle
    public var role: Role
    public var participantCount: Int?
    /// False once the presenter closed the session to new participants.
    public var joiningOpen: Bool
    public var openPollId: PollID?
    public var polls: [PollView]
    /// Subscribe to `/events` with `fromEventId` set to this to miss nothing after the snapshot.
    public var lastEventId: String?
    /// Present for participants: their own anonymous id.
    public var participantId: ParticipantID?
    /// Audience Q&A, as this role may see it.
    public var qna: QnAView
    /// Whether joining needs a nickname.
    public var nicknames: NicknamePolicy
    /// Sessions with quiz questions: the top of the leaderboard (and a participant's own row).
    public var leaderboard: LeaderboardView?
    /// A participant's own nickname.
    public var myNickname: String?
}

extension SessionState {
    /// The session as `role` may see it. Drafts only for the presenter; counts of hidden,
    /// unrevealed polls only for the presenter (displays show the room what participants see).
    public func view(
        for role: Role, participant: ParticipantID? = nil, lastEventId: String?, questionOrder: QuestionOrder = .top
    ) -> SessionView {
        let visiblePolls = polls.filter { role == .presenter || $0.state != .draft }
        return SessionView(
            sessionId: id,
            title: title,
            joinCode: joinCode.value,
            state: lifecycle,
            role: role,
            participantCount: role == .participant ? nil : participantCount,
            joiningOpen: joiningOpen,
            openPollId: openPollId,
            polls: visiblePolls.map { poll in
                let showCounts = role == .presenter || poll.resultsVisibleToParticipants
                let results = results(of: poll.id, for: role == .presenter ? .presenter : .room)
                return .init(
                    poll: role == .presenter ? poll : poll.forRoom,
                    results: showCounts ? results : nil,
                    totalBallots: results?.totalBallots ?? 0,
                    mine: participant.flatMap { ballot(of: $0, on: poll.id) },
                    mark: participant.flatMap { quizMark(of: $0, on: poll.id) }
                )
            },
            lastEventId: lastEventId,
            participantId: role == .participant ? participant : nil,
            qna: qna.view(for: role, participant: role == .participant ? participant : nil, order: questionOrder),
            nicknames: nicknamePolicy,
            leaderboard: hasQuiz ? leaderboard(for: role, participant: participant, top: Standings.topCount) : nil,
            myNickname: role == .participant ? participant.flatMap { nickname(of: $0) } : nil
        )
    }
}
