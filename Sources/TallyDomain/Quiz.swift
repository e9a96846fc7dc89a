import Foundation

/// What makes a choice poll a quiz question: the right answers, the time the room has, and the
/// points a right answer is worth at once (half of them at the last moment).
public struct QuizSettings: Codable, Sendable, Equatable {
    /// The right options. Absent in what the room sees until the question closes.
    public var correctOptionIds: [OptionID]?
    public var timeLimitSeconds: Int
    public var points: Int

    public init(correctOptionIds: [OptionID]?, timeLimitSeconds: Int, points: Int = 1000) {
        self.correctOptionIds = correctOptionIds
        self.timeLimitSeconds = timeLimitSeconds
        self.points = points
    }

    private enum CodingKeys: String, CodingKey { case correctOptionIds, timeLimitSeconds, points }

    /// `points` may be left out (1000).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        correctOptionIds = try c.decodeIfPresent([OptionID].self, forKey: .correctOptionIds)
        timeLimitSeconds = try c.decode(Int.self, forKey: .timeLimitSeconds)
        points = try c.decodeIfPresent(Int.self, forKey: .points) ?? 1000
    }

    public static let timeLimits = 5...300
    public static let pointRange = 1...10_000

    /// Points for a right answer accepted `elapsedMs` after the opening: all of them at once,
    /// half at the time limit, rounded half away from zero.
    ///
    /// In whole numbers: points × (2L − t) / 2L, rounded half up (every term is ≥ 0), so a
    /// result that is exactly something-and-a-half is never a floating-point hair below it.
    public func points(afterMilliseconds elapsedMs: Int64) -> Int {
        let limit = Int64(timeLimitSeconds) * 1000
        let t = min(max(elapsedMs, 0), limit)
        return Int((Int64(points) * (2 * limit - t) + limit) / (2 * limit))
    }

    /// A `single` ballot is right when its option is a right one; `multiple` needs exactly the
    /// right set.
    func isCorrect(_ chosen: [OptionID], kind: PollKind) -> Bool {
        let correct = Set(correctOptionIds ?? [])
        return kind == .single ? chosen.count == 1 && correct.contains(chosen[0]) : Set(chosen) == correct
    }
}

/// What a quiz ballot earned, decided when the server accepted it and stored with it, so a
/// restart never changes a score.
public struct QuizMark: Codable, Sendable, Equatable {
    public var correct: Bool
    public var points: Int
    /// From the opening to the ballot's acceptance, on the server's clock.
    public var elapsedMs: Int64

    public init(correct: Bool, points: Int, elapsedMs: Int64) {
        self.correct = correct
        self.points = points
        self.elapsedMs = elapsedMs
    }
}

/// Whether participants must choose a nickname when they join (a quiz's leaderboard shows it).
public enum NicknamePolicy: String, Codable, Sendable, CaseIterable, StrictlyDecodedEnum {
    case optional
    case required
}

/// Instants in the records (event timestamps, a quiz's opening and closing): milliseconds since
/// 1970 inside, RFC 3339 UTC with milliseconds on the wire (`2026-12-02T13:36:33.123Z`),
/// formatted from the whole milliseconds — formatting a `Date`'s fraction directly can print
/// .122 for a time stored as .123, a millisecond before a deadline it met.
public enum EventTime {
    public static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    public static func format(_ ms: Int64) -> String {
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let date = Date(timeIntervalSince1970: TimeInterval(seconds))
        var text = date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
        if text.hasSuffix("Z") { text.removeLast() }
        let fraction = ms - seconds * 1000
        return text + "." + String(String(fraction + 1000).dropFirst()) + "Z"
    }

    public static func parse(_ text: String) -> Int64? {
        guard text.hasSuffix("Z"), let dot = text.lastIndex(of: ".") else { return nil }
        let digits = text[text.index(after: dot)..<text.index(before: text.endIndex)]
        guard digits.count == 3, let fraction = Int64(digits) else { return nil }
        guard let date = try? Date(String(text[..<dot]) + "Z", strategy: .iso8601) else { return nil }
        return Int64(date.timeIntervalSince1970.rounded()) * 1000 + fraction
    }
}

/// One row of the leaderboard.
public struct LeaderboardEntry: Codable, Sendable, Equatable {
    public var nickname: String
    public var score: Int
    /// Ties share a rank (1, 2, 2, 4); among them, who reached the score first comes first.
    public var rank: Int

    public init(nickname: String, score: Int, rank: Int) {
        self.nickname = nickname
        self.score = score
        self.rank = rank
    }
}

/// The leaderboard as a role may see it: the top of it (or all of it), and the viewer's own row.
public struct LeaderboardView: Codable, Sendable, Equatable {
    /// How many are playing (every participant of the session).
    public var players: Int
    public var entries: [LeaderboardEntry]
    /// A participant's own row.
    public var me: LeaderboardEntry?
}

/// Every player's standing, best first: the score over the quiz questions closed since the last
/// reset, then who reached it first (the question and how fast), then who joined first.
public struct Standings: Sendable {
    public struct Row: Sendable {
        public var participant: ParticipantID
        public var nickname: String
        public var score: Int
        public var rank: Int
    }

    public let rows: [Row]
    let index: [ParticipantID: Int]

    init(rows: [Row]) {
        self.rows = rows
        var index: [ParticipantID: Int] = [:]
        index.reserveCapacity(rows.count)
        for (i, row) in rows.enumerated() { index[row.participant] = i }
        self.index = index
    }

    public func row(of participant: ParticipantID) -> Row? {
        index[participant].map { rows[$0] }
    }

    func entries(top: Int? = nil) -> [LeaderboardEntry] {
        rows.prefix(top ?? rows.count).map { LeaderboardEntry(nickname: $0.nickname, score: $0.score, rank: $0.rank) }
    }

    static let topCount = 10
}

extension SessionEvent {
    /// A quiz question closed: its right answers, how the room answered, how many were right.
    public struct QuizResults: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var correctOptionIds: [OptionID]
        public var results: PollResults
        public var answered: Int
        public var correct: Int
        public init(pollId: PollID, correctOptionIds: [OptionID], results: PollResults, answered: Int, correct: Int) {
            self.pollId = pollId
            self.correctOptionIds = correctOptionIds
            self.results = results
            self.answered = answered
            self.correct = correct
        }
    }

    /// The top of the leaderboard after a question closed (`pollId`) or the scores were reset.
    public struct QuizLeaderboard: Codable, Sendable, Equatable {
        public var pollId: PollID?
        public var players: Int
        public var entries: [LeaderboardEntry]
        public init(pollId: PollID?, players: Int, entries: [LeaderboardEntry]) {
            self.pollId = pollId
            self.players = players
            self.entries = entries
        }
        // A reset's leaderboard says `"pollId": null` rather than leaving the key out, so pages and the docs
        // can tell "after a reset" from a missing field.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pollId, forKey: .pollId)
            try c.encode(players, forKey: .players)
            try c.encode(entries, forKey: .entries)
        }
    }

    /// One participant's result for a question that closed; it reaches that participant only.
    public struct QuizScore: Codable, Sendable, Equatable {
        public var participantId: ParticipantID
        public var pollId: PollID
        public var answered: Bool
        public var correct: Bool
        public var points: Int
        public var total: Int
        public var rank: Int
        public var players: Int
        public init(
            participantId: ParticipantID, pollId: PollID, answered: Bool, correct: Bool, points: Int, total: Int, rank: Int,
            players: Int
        ) {
            self.participantId = participantId
            self.pollId = pollId
            self.answered = answered
            self.correct = correct
            self.points = points
            self.total = total
            self.rank = rank
            self.players = players
        }
    }

    /// The presenter started a new round: the questions scored so far no longer count.
    public struct QuizReset: Codable, Sendable, Equatable {
        public var pollIds: [PollID]
        public init(pollIds: [PollID]) {
            self.pollIds = pollIds
        }
    }

    /// The presenter made nicknames required (or optional) for joining.
    public struct NicknamesChanged: Codable, Sendable, Equatable {
        public var nicknames: NicknamePolicy
        public init(nicknames: NicknamePolicy) {
            self.nicknames = nicknames
        }
    }

    /// What the addressee of a `quiz.score` reads: the same without their own id.
    struct PublicQuizScore: Codable, Sendable {
        var pollId: PollID
        var answered: Bool
        var correct: Bool
        var points: Int
        var total: Int
        var rank: Int
        var players: Int
        init(_ s: QuizScore) {
            (pollId, answered, correct, points, total, rank, players) = (
                s.pollId, s.answered, s.correct, s.points, s.total, s.rank, s.players
            )
        }
    }
}
