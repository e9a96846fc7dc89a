/// Whether a participant may pick one option or several.
public enum PollKind: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case single
    case multiple
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

    public init(
        id: PollID, question: String, options: [PollOption], kind: PollKind,
        resultsVisibility: ResultsVisibility, state: PollState = .draft, revealed: Bool = false
    ) {
        self.id = id
        self.question = question
        self.options = options
        self.kind = kind
        self.resultsVisibility = resultsVisibility
        self.state = state
        self.revealed = revealed
    }

    /// Participants see counts of a live poll, or of a hidden one after `reveal`.
    public var resultsVisibleToParticipants: Bool {
        resultsVisibility == .live || revealed
    }
}

/// Counts per option and the number of ballots (a multiple-choice ballot counts once in
/// `totalBallots` but once per chosen option in `counts`).
public struct PollResults: Codable, Sendable, Equatable {
    public struct OptionCount: Codable, Sendable, Equatable {
        public var optionId: OptionID
        public var count: Int
    }

    public var pollId: PollID
    public var counts: [OptionCount]
    public var totalBallots: Int

    public init(pollId: PollID, counts: [OptionCount], totalBallots: Int) {
        self.pollId = pollId
        self.counts = counts
        self.totalBallots = totalBallots
    }
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
