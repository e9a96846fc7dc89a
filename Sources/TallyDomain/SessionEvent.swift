/// Everything that happens to a session, as facts. The event log stores these; the in-memory
/// session state is rebuilt from them (`SessionState.apply`), and clients receive their public
/// form (`publicPayload`) filtered by `audience`.
public enum SessionEvent: Sendable, Equatable {
    case sessionCreated(SessionCreated)
    case sessionEnded(SessionEnded)
    case pollCreated(PollPayload)
    case pollOpened(PollPayload)
    case pollClosed(PollRef)
    case pollRevealed(PollRevealed)
    case pollResults(ResultsPublished)
    case pollBallots(BallotCount)
    case participantJoined(ParticipantJoined)
    case ballotCast(BallotCast)
    case joiningChanged(JoiningChanged)
    case linkRotated(LinkRotated)
    case pollModerated(PollModerated)
    case qnaOpened(QnAOpened)
    case qnaClosed(QnAClosed)
    case questionAsked(QuestionShown)
    case questionApproved(QuestionShown)
    case questionHidden(QuestionRef)
    case questionAnswered(QuestionRef)
    case questionHighlighted(QuestionRef)
    case questionWithdrawn(QuestionRef)
    case questionUpvoted(QuestionUpvoted)
    case questionUpvotes(UpvoteCounts)
    case quizResults(QuizResults)
    case quizLeaderboard(QuizLeaderboard)
    case quizScore(QuizScore)
    case quizReset(QuizReset)
    case nicknamesChanged(NicknamesChanged)

    public struct SessionCreated: Codable, Sendable, Equatable {
        public var sessionId: SessionID
        public var title: String
        public var joinCode: JoinCode
        /// Absent: optional (as every session before nicknames existed).
        public var nicknames: NicknamePolicy?
        public init(sessionId: SessionID, title: String, joinCode: JoinCode, nicknames: NicknamePolicy? = nil) {
            self.sessionId = sessionId
            self.title = title
            self.joinCode = joinCode
            self.nicknames = nicknames
        }
    }

    public struct SessionEnded: Codable, Sendable, Equatable {
        public var sessionId: SessionID
        public init(sessionId: SessionID) {
            self.sessionId = sessionId
        }
    }

    public struct PollPayload: Codable, Sendable, Equatable {
        public var poll: Poll
        public init(poll: Poll) {
            self.poll = poll
        }
    }

    public struct PollRef: Codable, Sendable, Equatable {
        public var pollId: PollID
        public init(pollId: PollID) {
            self.pollId = pollId
        }
    }

    public struct PollRevealed: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var results: PollResults
        public init(pollId: PollID, results: PollResults) {
            self.pollId = pollId
            self.results = results
        }
    }

    /// A coalesced snapshot of one poll's counts. `visibleToParticipants` is decided when the
    /// event is made, so replaying it later routes it exactly as it was routed live.
    ///
    /// `viewer` is set when a written poll has entries the room may not see: then one event
    /// carries the presenter's results (entries marked) and another the room's (without them).
    /// Absent, the one event is everyone's (as every event written before moderation existed).
    public struct ResultsPublished: Codable, Sendable, Equatable {
        public var results: PollResults
        public var visibleToParticipants: Bool
        public var viewer: ResultsViewer?
        public init(results: PollResults, visibleToParticipants: Bool, viewer: ResultsViewer? = nil) {
            self.results = results
            self.visibleToParticipants = visibleToParticipants
            self.viewer = viewer
        }
    }

    /// The presenter hid, showed again or approved one written entry. The room learns of it
    /// only through the results that follow at once.
    public struct PollModerated: Codable, Sendable, Equatable {
        public enum Entry: String, Codable, Sendable { case word, answer }
        public enum Action: String, Codable, Sendable { case hide, unhide, approve }
        public var pollId: PollID
        public var entry: Entry
        /// The word's key (its normalised form) or the answer's id.
        public var target: String
        public var action: Action
        public init(pollId: PollID, entry: Entry, target: String, action: Action) {
            self.pollId = pollId
            self.entry = entry
            self.target = target
            self.action = action
        }
    }

    /// How many ballots a poll holds, without per-option counts: what the room (displays and
    /// participants) may know of a hidden poll before the presenter reveals it.
    public struct BallotCount: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var totalBallots: Int
        public init(pollId: PollID, totalBallots: Int) {
            self.pollId = pollId
            self.totalBallots = totalBallots
        }
    }

    public struct ParticipantJoined: Codable, Sendable, Equatable {
        public var participantId: ParticipantID
        public var participantCount: Int
        public var nickname: String?
        public init(participantId: ParticipantID, participantCount: Int, nickname: String? = nil) {
            self.participantId = participantId
            self.participantCount = participantCount
            self.nickname = nickname
        }
    }

    /// The presenter opened or closed the session to new participants.
    public struct JoiningChanged: Codable, Sendable, Equatable {
        public var joiningOpen: Bool
        public init(joiningOpen: Bool) {
            self.joiningOpen = joiningOpen
        }
    }

    /// A presenter or display link was replaced: tokens of an older generation are refused.
    public struct LinkRotated: Codable, Sendable, Equatable {
        public var link: SessionLink
        public var generation: Int
        public init(link: SessionLink, generation: Int) {
            self.link = link
            self.generation = generation
        }
    }

    /// One participant's ballot; it replaces any earlier ballot of theirs on the same poll.
    /// Stored flat: `{"pollId", "participantId", "optionIds" | "value" | "ranking" | "words" |
    /// "answers"}` (a choice ballot reads as it always has).
    public struct BallotCast: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var participantId: ParticipantID
        public var ballot: Ballot
        /// A quiz question's ballot: whether it is right and what it earned, decided at once.
        public var quiz: QuizMark?
        public init(pollId: PollID, participantId: ParticipantID, ballot: Ballot, quiz: QuizMark? = nil) {
            self.pollId = pollId
            self.participantId = participantId
            self.ballot = ballot
            self.quiz = quiz
        }

        private enum CodingKeys: String, CodingKey { case pollId, participantId, quiz }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            pollId = try c.decode(PollID.self, forKey: .pollId)
            participantId = try c.decode(ParticipantID.self, forKey: .participantId)
            quiz = try c.decodeIfPresent(QuizMark.self, forKey: .quiz)
            ballot = try Ballot(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pollId, forKey: .pollId)
            try c.encode(participantId, forKey: .participantId)
            try c.encodeIfPresent(quiz, forKey: .quiz)
            try ballot.encode(to: encoder)
        }
    }

    /// True when the event takes back from the room something it was shown (a question hidden
    /// or withdrawn, a word or answer hidden): a replay across it would hand a client the text
    /// in the earlier events, so such a replay is served to the room as `stream.reset` instead.
    public var retractsFromRoom: Bool {
        switch self {
        case .questionHidden(let r), .questionWithdrawn(let r): r.visibleToRoom
        case .pollModerated(let m): m.action == .hide
        default: false
        }
    }

    /// The wire name of the event (`eventType` in the envelope).
    public var type: String {
        switch self {
        case .sessionCreated: "session.created"
        case .sessionEnded: "session.ended"
        case .pollCreated: "poll.created"
        case .pollOpened: "poll.opened"
        case .pollClosed: "poll.closed"
        case .pollRevealed: "poll.revealed"
        case .pollResults: "poll.results"
        case .pollBallots: "poll.ballots"
        case .participantJoined: "participant.joined"
        case .ballotCast: "ballot.cast"
        case .joiningChanged: "session.joining"
        case .linkRotated: "session.link.rotated"
        case .pollModerated: "poll.moderated"
        case .qnaOpened: "qna.opened"
        case .qnaClosed: "qna.closed"
        case .questionAsked: "question.asked"
        case .questionApproved: "question.approved"
        case .questionHidden: "question.hidden"
        case .questionAnswered: "question.answered"
        case .questionHighlighted: "question.highlighted"
        case .questionWithdrawn: "question.withdrawn"
        case .questionUpvoted: "question.upvoted"
        case .questionUpvotes: "question.upvotes"
        case .quizResults: "quiz.results"
        case .quizLeaderboard: "quiz.leaderboard"
        case .quizScore: "quiz.score"
        case .quizReset: "quiz.reset"
        case .nicknamesChanged: "session.nicknames"
        }
    }

    /// Which roles receive this event. Drafts go to the presenter only; counts of a hidden poll
    /// reach only the presenter until the reveal (a display is what the audience sees, so it
    /// gets what participants get: the ballot count); single ballots reach nobody.
    ///
    /// Routing is computed from the fact each time, never stored, so events written before this
    /// rule (when displays also got hidden counts) are replayed under it too.
    public var audience: Audience {
        switch self {
        case .sessionCreated, .sessionEnded, .pollOpened, .pollClosed, .pollRevealed: .everyone
        case .pollCreated: .presenter
        case .pollResults(let r):
            switch r.viewer {
            case nil: r.visibleToParticipants ? .everyone : .presenter
            case .presenter: .presenter
            case .room: r.visibleToParticipants ? [.display, .participant] : .nobody
            }
        case .pollBallots: [.display, .participant]
        case .participantJoined: [.presenter, .display]
        case .ballotCast: .nobody
        case .joiningChanged: .everyone
        // Only the presenter manages links; the fact holds no token, only a generation number.
        case .linkRotated: .presenter
        // What was hidden (a word's text) is for the presenter's eyes only.
        case .pollModerated: .presenter
        case .qnaOpened, .qnaClosed, .questionApproved, .questionHighlighted: .everyone
        // A pending (or blocked) question's text, and what becomes of a question the room never
        // saw, reach the presenter only.
        case .questionAsked(let q): q.visibleToRoom ? .everyone : .presenter
        case .questionHidden(let r), .questionAnswered(let r), .questionWithdrawn(let r): r.visibleToRoom ? .everyone : .presenter
        case .questionUpvoted: .nobody
        case .questionUpvotes(let c):
            switch c.viewer {
            case nil: .everyone
            case .presenter: .presenter
            case .room: [.display, .participant]
            }
        case .quizResults, .quizLeaderboard, .quizReset, .nicknamesChanged: .everyone
        // Each participant's own result, and nobody else's (the presenter has the leaderboard).
        case .quizScore(let s): .only(s.participantId)
        }
    }
}

// MARK: - Storage and wire encoding

extension SessionEvent {
    /// The full fact, as stored in the event log.
    public var storedPayload: any Encodable & Sendable {
        switch self {
        case .sessionCreated(let p): p
        case .sessionEnded(let p): p
        case .pollCreated(let p): p
        case .pollOpened(let p): p
        case .pollClosed(let p): p
        case .pollRevealed(let p): p
        case .pollResults(let p): p
        case .pollBallots(let p): p
        case .participantJoined(let p): p
        case .ballotCast(let p): p
        case .joiningChanged(let p): p
        case .linkRotated(let p): p
        case .pollModerated(let p): p
        case .qnaOpened(let p): p
        case .qnaClosed(let p): p
        case .questionAsked(let p), .questionApproved(let p): p
        case .questionHidden(let p), .questionAnswered(let p), .questionHighlighted(let p), .questionWithdrawn(let p): p
        case .questionUpvoted(let p): p
        case .questionUpvotes(let p): p
        case .quizResults(let p): p
        case .quizLeaderboard(let p): p
        case .quizScore(let p): p
        case .quizReset(let p): p
        case .nicknamesChanged(let p): p
        }
    }

    /// What a client sees in the envelope's `payload`. Identical to the stored fact except
    /// where the fact holds something no client should learn (which participant joined).
    public var publicPayload: any Encodable & Sendable {
        switch self {
        case .participantJoined(let p): PublicParticipantCount(participantCount: p.participantCount)
        case .pollResults(let p): p.results
        case .questionAsked(let q), .questionApproved(let q):
            PublicQuestion(
                question: QuestionView(
                    questionId: q.question.questionId, text: q.question.text, name: q.question.name, upvotes: q.upvotes,
                    state: q.question.state, highlighted: q.highlighted, askedAt: q.question.askedAt,
                    // Moderation's reasons are the presenter's: the snapshot marks blocked
                    // questions for them; an event may reach the room.
                    blocked: nil))
        case .questionHidden(let r), .questionAnswered(let r), .questionHighlighted(let r), .questionWithdrawn(let r):
            PublicQuestionRef(questionId: r.questionId)
        case .questionUpvotes(let c): PublicCounts(counts: c.counts)
        // poll.opened reaches the room: a quiz question's right answers are not in it.
        case .pollOpened(let p): PollPayload(poll: p.poll.forRoom)
        case .quizScore(let s): PublicQuizScore(s)
        default: storedPayload
        }
    }

    struct PublicParticipantCount: Codable, Sendable {
        var participantCount: Int
    }

    public enum DecodeError: Error, Equatable {
        case unknownType(String)
    }

    /// Rebuilds an event from its stored type name and payload.
    public static func decode(type: String, using decoder: some PayloadDecoder) throws -> SessionEvent {
        func d<T: Decodable>(_: T.Type) throws -> T { try decoder.decode(T.self) }
        switch type {
        case "session.created": return .sessionCreated(try d(SessionCreated.self))
        case "session.ended": return .sessionEnded(try d(SessionEnded.self))
        case "poll.created": return .pollCreated(try d(PollPayload.self))
        case "poll.opened": return .pollOpened(try d(PollPayload.self))
        case "poll.closed": return .pollClosed(try d(PollRef.self))
        case "poll.revealed": return .pollRevealed(try d(PollRevealed.self))
        case "poll.results": return .pollResults(try d(ResultsPublished.self))
        case "poll.ballots": return .pollBallots(try d(BallotCount.self))
        case "participant.joined": return .participantJoined(try d(ParticipantJoined.self))
        case "ballot.cast": return .ballotCast(try d(BallotCast.self))
        case "session.joining": return .joiningChanged(try d(JoiningChanged.self))
        case "session.link.rotated": return .linkRotated(try d(LinkRotated.self))
        case "poll.moderated": return .pollModerated(try d(PollModerated.self))
        case "qna.opened": return .qnaOpened(try d(QnAOpened.self))
        case "qna.closed": return .qnaClosed(try d(QnAClosed.self))
        case "question.asked": return .questionAsked(try d(QuestionShown.self))
        case "question.approved": return .questionApproved(try d(QuestionShown.self))
        case "question.hidden": return .questionHidden(try d(QuestionRef.self))
        case "question.answered": return .questionAnswered(try d(QuestionRef.self))
        case "question.highlighted": return .questionHighlighted(try d(QuestionRef.self))
        case "question.withdrawn": return .questionWithdrawn(try d(QuestionRef.self))
        case "question.upvoted": return .questionUpvoted(try d(QuestionUpvoted.self))
        case "question.upvotes": return .questionUpvotes(try d(UpvoteCounts.self))
        case "quiz.results": return .quizResults(try d(QuizResults.self))
        case "quiz.leaderboard": return .quizLeaderboard(try d(QuizLeaderboard.self))
        case "quiz.score": return .quizScore(try d(QuizScore.self))
        case "quiz.reset": return .quizReset(try d(QuizReset.self))
        case "session.nicknames": return .nicknamesChanged(try d(NicknamesChanged.self))
        default: throw DecodeError.unknownType(type)
        }
    }
}

/// Decodes one stored payload; the event log supplies one backed by its JSON bytes.
public protocol PayloadDecoder {
    func decode<T: Decodable>(_ type: T.Type) throws -> T
}
