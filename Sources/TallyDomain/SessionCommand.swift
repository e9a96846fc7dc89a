/// What presenters and participants ask of a session. Identifiers a command needs are chosen
/// by the caller (from a cryptographic generator), so `decide` stays a pure function.
public enum SessionCommand: Sendable, Equatable {
    case createPoll(CreatePoll)
    /// A template's polls, as drafts, all or none (each entry decided like `createPoll`).
    case importPolls([CreatePoll])
    case openPoll(PollID)
    case closePoll(PollID)
    case revealPoll(PollID)
    case endSession
    /// A participant joins, with a nickname when they chose one (or the session asks for one).
    case join(ParticipantID, nickname: String? = nil)
    /// The presenter makes nicknames required (or optional) for new participants.
    case setNicknames(NicknamePolicy)
    /// The presenter starts a new round of the quiz: every score back to zero.
    case resetScores
    /// The presenter closes (or reopens) the session to new participants.
    case setJoining(open: Bool)
    /// Invalidates a presenter or display link: its tokens stop working at once.
    case rotateLink(SessionLink)
    case vote(participant: ParticipantID, poll: PollID, ballot: BallotInput)
    /// The presenter hides, shows again or approves a written word or answer.
    case moderate(PollID, ModerationAction)
    /// Emitted by the results coalescer, not by a person: publish the current counts of a poll.
    case publishResults(PollID)
    /// Audience Q&A.
    case qna(QnACommand)

    public struct CreatePoll: Sendable, Equatable {
        public var pollId: PollID
        public var question: String
        public var options: [String]
        public var kind: PollKind
        public var resultsVisibility: ResultsVisibility
        public var openImmediately: Bool
        /// The kind-specific part; each is refused on a kind it does not belong to.
        public var scale: ScaleSettings?
        public var maxWords: Int?
        public var maxAnswers: Int?
        public var moderation: Moderation?
        /// Makes a choice poll a quiz question.
        public var quiz: QuizSettings?

        public init(
            pollId: PollID, question: String, options: [String], kind: PollKind,
            resultsVisibility: ResultsVisibility = .live, openImmediately: Bool = false,
            scale: ScaleSettings? = nil, maxWords: Int? = nil, maxAnswers: Int? = nil, moderation: Moderation? = nil,
            quiz: QuizSettings? = nil
        ) {
            self.quiz = quiz
            self.pollId = pollId
            self.question = question
            self.options = options
            self.kind = kind
            self.resultsVisibility = resultsVisibility
            self.openImmediately = openImmediately
            self.scale = scale
            self.maxWords = maxWords
            self.maxAnswers = maxAnswers
            self.moderation = moderation
        }
    }
}

/// What the presenter does to a written entry. Words are named by their text (any spelling of
/// the word), answers by id.
public enum ModerationAction: Sendable, Equatable {
    case hideWord(String)
    case unhideWord(String)
    case hideAnswer(AnswerID)
    case unhideAnswer(AnswerID)
    case approveAnswer(AnswerID)
}

/// The two links a session hands out besides participants' own: the presenter's and the
/// screens'. Each has a generation; rotating one bumps it and every older token is refused.
public enum SessionLink: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case presenter
    case display
}
