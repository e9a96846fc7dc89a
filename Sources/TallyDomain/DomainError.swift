/// Why a command was refused. Each case maps to one HTTP status at the edge:
/// `invalid` → 400, `notFound` → 404, `conflict` → 409, `limitReached` → 409,
/// `notAllowed` → 403, `gone` → 410.
public enum DomainError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The command itself is malformed (empty question, 13 options, unknown option id …).
    case invalid(String)
    /// It names a poll (or session) that does not exist.
    case notFound(String)
    /// It is well-formed but the session or poll is in the wrong state for it.
    case conflict(String)
    /// A configured limit (polls per session …) would be exceeded.
    case limitReached(String)
    /// The session refuses it by the presenter's choice (joining closed).
    case notAllowed(String)
    /// It names something that is over for good (an ended session's join code).
    case gone(String)

    public var description: String {
        switch self {
        case .invalid(let m), .notFound(let m), .conflict(let m), .limitReached(let m), .notAllowed(let m), .gone(let m): m
        }
    }
}

/// Sizes that keep one session's state bounded. Generous for a long conference day.
public struct SessionLimits: Sendable, Equatable {
    public var maxTitleLength = 200
    public var maxQuestionLength = 500
    public var maxOptionLength = 200
    public var minOptions = 2
    public var maxOptions = 12
    public var maxPollsPerSession = 1_000
    public var maxParticipantsPerSession = 20_000
    /// A word for a word cloud, and an open answer (in characters).
    public var maxWordLength = 25
    public var maxAnswerLength = 280
    public var maxScaleLabelLength = 40
    /// Audience Q&A: a name, and how many questions (a conference day's worth).
    public var maxNameLength = 40
    /// A quiz player's nickname on the leaderboard.
    public var maxNicknameLength = 20
    public var maxQuestionsPerParticipant = 20
    public var maxQuestionsPerSession = 5_000
    /// Written words and answers the room never sees (see `Blocklist`).
    public var blocklist = Blocklist()

    public init() {}
}
