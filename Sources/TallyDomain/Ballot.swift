/// One participant's ballot on one poll, as it is stored: the latest one replaces any earlier.
public enum Ballot: Sendable, Equatable {
    /// `single`/`multiple`: the chosen options.
    case choice([OptionID])
    /// `scale`: the chosen value.
    case scale(Int)
    /// `ranking`: every option once, first place first.
    case ranking([OptionID])
    /// `wordcloud`: the participant's words (distinct after normalising).
    case words([Word])
    /// `open`: all of the participant's answers, oldest first.
    case answers([Answer])

    /// A word as written (trimmed, inner whitespace collapsed) and the key it is counted under.
    public struct Word: Codable, Sendable, Equatable {
        public var text: String
        public var key: String
        /// The blocklist matched it when it was cast: counted, never shown to the room.
        public var blocked: Bool?

        public init(text: String, key: String, blocked: Bool) {
            self.text = text
            self.key = key
            self.blocked = blocked ? true : nil
        }

        public var isBlocked: Bool { blocked == true }
    }

    /// One written answer. `number` orders a poll's answers (newest last) and is assigned by
    /// the session's writer, so replaying the log orders them exactly as they were live.
    public struct Answer: Codable, Sendable, Equatable {
        public var answerId: AnswerID
        public var number: Int
        public var text: String
        public var blocked: Bool?

        public init(answerId: AnswerID, number: Int, text: String, blocked: Bool) {
            self.answerId = answerId
            self.number = number
            self.text = text
            self.blocked = blocked ? true : nil
        }

        public var isBlocked: Bool { blocked == true }
    }
}

extension Ballot: Codable {
    private enum CodingKeys: String, CodingKey {
        case optionIds, value, ranking, words, answers
    }

    /// Flat, one key per kind (`{"optionIds": [...]}`, `{"value": 4}` …), so a stored
    /// `ballot.cast` of a choice poll reads exactly as before the other kinds existed.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .choice(let ids): try c.encode(ids, forKey: .optionIds)
        case .scale(let value): try c.encode(value, forKey: .value)
        case .ranking(let ids): try c.encode(ids, forKey: .ranking)
        case .words(let words): try c.encode(words, forKey: .words)
        case .answers(let answers): try c.encode(answers, forKey: .answers)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let ids = try c.decodeIfPresent([OptionID].self, forKey: .optionIds) {
            self = .choice(ids)
        } else if let value = try c.decodeIfPresent(Int.self, forKey: .value) {
            self = .scale(value)
        } else if let ids = try c.decodeIfPresent([OptionID].self, forKey: .ranking) {
            self = .ranking(ids)
        } else if let words = try c.decodeIfPresent([Word].self, forKey: .words) {
            self = .words(words)
        } else if let answers = try c.decodeIfPresent([Answer].self, forKey: .answers) {
            self = .answers(answers)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a ballot"))
        }
    }
}

/// What a participant sends; `decide` checks it against the poll and turns it into a `Ballot`.
public enum BallotInput: Sendable, Equatable {
    case options([OptionID])
    case value(Int)
    case ranking([OptionID])
    case words([String])
    /// An answer to an open poll. `answerId` is the id a new answer gets (chosen by the caller);
    /// `replacing` names one of the participant's own answers to replace instead of adding one.
    case text(String, answerId: AnswerID, replacing: AnswerID?)

    /// The body field that carries this input, for error messages.
    var field: String {
        switch self {
        case .options: "optionIds"
        case .value: "value"
        case .ranking: "ranking"
        case .words: "words"
        case .text: "text"
        }
    }
}
