/// What presenters and participants ask of a session. Identifiers a command needs are chosen
/// by the caller (from a cryptographic generator), so `decide` stays a pure function.
public enum SessionCommand: Sendable, Equatable {
    case createPoll(CreatePoll)
    case openPoll(PollID)
    case closePoll(PollID)
    case revealPoll(PollID)
    case endSession
    case join(ParticipantID)
    /// The presenter closes (or reopens) the session to new participants.
    case setJoining(open: Bool)
    /// Invalidates a presenter or display link: its tokens stop working at once.
    case rotateLink(SessionLink)
    case vote(participant: ParticipantID, poll: PollID, optionIds: [OptionID])
    /// Emitted by the results coalescer, not by a person: publish the current counts of a poll.
    case publishResults(PollID)

    public struct CreatePoll: Sendable, Equatable {
        public var pollId: PollID
        public var question: String
        public var options: [String]
        public var kind: PollKind
        public var resultsVisibility: ResultsVisibility
        public var openImmediately: Bool

        public init(
            pollId: PollID, question: String, options: [String], kind: PollKind,
            resultsVisibility: ResultsVisibility = .live, openImmediately: Bool = false
        ) {
            self.pollId = pollId
            self.question = question
            self.options = options
            self.kind = kind
            self.resultsVisibility = resultsVisibility
            self.openImmediately = openImmediately
        }
    }
}

/// The two links a session hands out besides participants' own: the presenter's and the
/// screens'. Each has a generation; rotating one bumps it and every older token is refused.
public enum SessionLink: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case presenter
    case display
}
