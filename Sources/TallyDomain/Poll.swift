/// How the room answers a poll.
public enum PollKind: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    /// Pick one option.
    case single
    /// Pick one or more options.
    case multiple
    /// A number on a scale (e.g. 1 to 5).
    case scale
    /// Put every option in order, best first.
    case ranking
    /// One to three short words; the display shows them as a word cloud.
    case wordcloud
    /// Free text; the display shows the answers as a wall.
    case open

    /// Kinds whose ballots name options (and so whose polls have them).
    public var hasOptions: Bool {
        switch self {
        case .single, .multiple, .ranking: true
        case .scale, .wordcloud, .open: false
        }
    }

    /// Kinds whose ballots are text the room writes, which the presenter can moderate.
    public var isWritten: Bool { self == .wordcloud || self == .open }
}

/// Whether written answers show as they come (`post`: the presenter can still hide them) or
/// only once the presenter approves them (`pre`).
public enum Moderation: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case post
    case pre
}

/// The range of a scale poll and the words at its ends ("Not at all" … "Absolutely").
public struct ScaleSettings: Codable, Sendable, Equatable {
    public var min: Int
    public var max: Int
    public var minLabel: String?
    public var maxLabel: String?

    public init(min: Int, max: Int, minLabel: String? = nil, maxLabel: String? = nil) {
        self.min = min
        self.max = max
        self.minLabel = minLabel
        self.maxLabel = maxLabel
    }

    public var values: ClosedRange<Int> { min...max }
}

/// Whether participants see counts while voting, or only once the presenter reveals them.
/// Presenters and displays always see counts.
public enum ResultsVisibility: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case live
    case hidden
}

/// A poll moves draft → open → closed, never backwards.
public enum PollState: String, Codable, Sendable {
    case draft
    case open
    case closed
}

/// One answer a participant can choose.
public struct PollOption: Codable, Sendable, Hashable {
    public var id: OptionID
    public var label: String

    public init(id: OptionID, label: String) {
        self.id = id
        self.label = label
    }
}

/// A question put to the room.
public struct Poll: Codable, Sendable, Equatable {
    public var id: PollID
    public var question: String
    public var options: [PollOption]
    public var kind: PollKind
    public var resultsVisibility: ResultsVisibility
    public var state: PollState
    /// True once the presenter has revealed a hidden poll's results to participants.
    public var revealed: Bool
    /// Scale polls only.
    public var scale: ScaleSettings?
    /// Word-cloud polls only: how many words one ballot may hold.
    public var maxWords: Int?
    /// Open polls only: how many answers one participant may give.
    public var maxAnswers: Int?
    /// Open polls only (absent means `post`).
    public var moderation: Moderation?
    /// Quiz questions only (choice polls with right answers and a time limit).
    public var quiz: QuizSettings?
    /// Quiz questions, once opened: when, and when the server closes them (RFC 3339, ms).
    public var openedAt: String?
    public var closesAt: String?

    public init(
        id: PollID, question: String, options: [PollOption], kind: PollKind,
        resultsVisibility: ResultsVisibility, state: PollState = .draft, revealed: Bool = false,
        scale: ScaleSettings? = nil, maxWords: Int? = nil, maxAnswers: Int? = nil, moderation: Moderation? = nil,
        quiz: QuizSettings? = nil
    ) {
        self.quiz = quiz
        self.id = id
        self.question = question
        self.options = options
        self.kind = kind
        self.resultsVisibility = resultsVisibility
        self.state = state
        self.revealed = revealed
        self.scale = scale
        self.maxWords = maxWords
        self.maxAnswers = maxAnswers
        self.moderation = moderation
    }

    /// The poll as the room may see it: a quiz question's right answers stay the presenter's
    /// until it closes.
    public var forRoom: Poll {
        guard state != .closed, quiz?.correctOptionIds != nil else { return self }
        var poll = self
        poll.quiz?.correctOptionIds = nil
        return poll
    }

    /// Answers wait for the presenter's approval before the room sees them.
    public var premoderated: Bool { moderation == .pre }

    /// Participants see counts of a live poll, or of a hidden one after `reveal`.
    public var resultsVisibleToParticipants: Bool {
        resultsVisibility == .live || revealed
    }
}

/// What a poll's ballots add up to. `pollId` and `totalBallots` are always there; the rest
/// depends on the kind (absent fields are not encoded):
/// - `single`/`multiple`: `counts` (a multiple-choice ballot counts once in `totalBallots` but
///   once per chosen option in `counts`);
/// - `scale`: `distribution` (every value of the range), `mean`, `median`;
/// - `ranking`: `options` by points (Borda count);
/// - `wordcloud`: `words` (the most frequent, by count) and `distinctWords`;
/// - `open`: `answers` (the newest first) and `totalAnswers`.
///
/// Word and answer lists are cut to fit `ResultsBudget`, so a `poll.results` event stays small
/// whatever the room writes. For the presenter they include hidden, blocked and pending entries,
/// marked; everyone else gets them without those (see `ResultsViewer`).
public struct PollResults: Codable, Sendable, Equatable {
    public struct OptionCount: Codable, Sendable, Equatable {
        public var optionId: OptionID
        public var count: Int
    }

    public struct ValueCount: Codable, Sendable, Equatable {
        public var value: Int
        public var count: Int
    }

    public struct RankedOption: Codable, Sendable, Equatable {
        public var optionId: OptionID
        public var points: Int
        /// 1 is first place; null while nobody has ranked.
        public var averageRank: Double?

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(optionId, forKey: .optionId)
            try c.encode(points, forKey: .points)
            try c.encode(averageRank, forKey: .averageRank)
        }
    }

    public struct WordCount: Codable, Sendable, Equatable {
        /// The spelling the room used most for this word.
        public var text: String
        public var count: Int
        /// Presenter only: hidden by the presenter, or matched by the blocklist.
        public var hidden: Bool?
        public var blocked: Bool?
    }

    public struct AnswerEntry: Codable, Sendable, Equatable {
        public var answerId: AnswerID
        public var text: String
        /// Presenter only: hidden, waiting for approval, or matched by the blocklist.
        public var hidden: Bool?
        public var pending: Bool?
        public var blocked: Bool?
    }

    public var pollId: PollID
    public var counts: [OptionCount]?
    public var distribution: [ValueCount]?
    /// Scale polls: null while there are no ballots.
    public var mean: Double?
    public var median: Double?
    public var options: [RankedOption]?
    public var words: [WordCount]?
    public var distinctWords: Int?
    public var answers: [AnswerEntry]?
    public var totalAnswers: Int?
    public var totalBallots: Int

    public init(pollId: PollID, counts: [OptionCount], totalBallots: Int) {
        self.pollId = pollId
        self.counts = counts
        self.totalBallots = totalBallots
    }

    init(pollId: PollID, totalBallots: Int) {
        self.pollId = pollId
        self.totalBallots = totalBallots
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pollId, forKey: .pollId)
        try c.encodeIfPresent(counts, forKey: .counts)
        if let distribution {
            try c.encode(distribution, forKey: .distribution)
            // A scale's mean and median are always present, null before the first ballot.
            try c.encode(mean, forKey: .mean)
            try c.encode(median, forKey: .median)
        }
        try c.encodeIfPresent(options, forKey: .options)
        try c.encodeIfPresent(words, forKey: .words)
        try c.encodeIfPresent(distinctWords, forKey: .distinctWords)
        try c.encodeIfPresent(answers, forKey: .answers)
        try c.encodeIfPresent(totalAnswers, forKey: .totalAnswers)
        try c.encode(totalBallots, forKey: .totalBallots)
    }
}

/// Who results are computed for: the presenter sees every written entry (hidden, blocked and
/// pending ones marked); the room — displays and participants — sees only what may be shown.
public enum ResultsViewer: String, Codable, Sendable {
    case presenter
    case room
}

/// Enums whose decoding error names the accepted values, so a client sending `"kind": "ranked"`
/// learns what it may send instead.
public protocol StrictlyDecodedEnum: RawRepresentable<String>, CaseIterable {}

extension StrictlyDecodedEnum {
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: raw) else {
            let allowed = Self.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "must be one of \(allowed)"))
        }
        self = value
    }
}
