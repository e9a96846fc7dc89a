import Foundation
import TallyDomain
import TallyRealtime

/// Results of a session as files people take home: CSV (one row per option) or JSON (polls,
/// counts and the ballots, each under a pseudonym — see `ParticipantPseudonyms`). Used by
/// `tally export` and the presenter's download.
public enum SessionExport {
    /// One row per option (choice and ranking), per value (scale), per word (word cloud) or per
    /// answer (open), with that row's numbers; the columns a kind does not use stay empty.
    public static func csv(_ state: SessionState) -> String {
        var rows = [
            [
                "session_id", "session_title", "poll_number", "poll_id", "question", "kind", "state", "option_id", "option", "votes",
                "total_ballots", "points", "average_rank", "mean", "median", "moderation", "asked_at",
            ]
        ]
        for (index, poll) in state.polls.enumerated() {
            guard let results = state.completeResults(of: poll.id) else { continue }
            let prefix = [state.id, state.title, "\(index + 1)", poll.id, poll.question, poll.kind.rawValue, poll.state.rawValue]
            let total = "\(results.totalBallots)"
            func row(_ id: String, _ label: String, _ votes: String, points: String = "", rank: String = "", moderation: String = "") {
                rows.append(prefix + [id, label, votes, total, points, rank, "", "", moderation, ""])
            }
            let label = Dictionary(poll.options.map { ($0.id, $0.label) }, uniquingKeysWith: { a, _ in a })
            switch poll.kind {
            case .single, .multiple:
                for option in poll.options {
                    row(option.id, option.label, "\(results.counts?.first { $0.optionId == option.id }?.count ?? 0)")
                }
            case .scale:
                for bucket in results.distribution ?? [] {
                    var name = "\(bucket.value)"
                    if bucket.value == poll.scale?.min, let l = poll.scale?.minLabel { name += " (\(l))" }
                    if bucket.value == poll.scale?.max, let l = poll.scale?.maxLabel { name += " (\(l))" }
                    rows.append(
                        prefix + [
                            "\(bucket.value)", name, "\(bucket.count)", total, "", "", number(results.mean), number(results.median), "",
                        ])
                }
            case .ranking:
                for option in results.options ?? [] {
                    row(option.optionId, label[option.optionId] ?? "", "", points: "\(option.points)", rank: number(option.averageRank))
                }
            case .wordcloud:
                for word in results.words ?? [] {
                    row("", word.text, "\(word.count)", moderation: moderation(hidden: word.hidden, blocked: word.blocked))
                }
            case .open:
                // Oldest first, as the answers came in.
                for answer in (results.answers ?? []).reversed() {
                    row(
                        answer.answerId, answer.text, "",
                        moderation: moderation(hidden: answer.hidden, blocked: answer.blocked, pending: answer.pending))
                }
            }
        }
        // Audience Q&A: one row per question (not withdrawn), oldest first; votes = upvotes.
        for question in state.qna.allQuestions where question.state != .withdrawn {
            rows.append(
                [
                    state.id, state.title, "", question.questionId, question.text, "question", question.state.rawValue, "",
                    question.name ?? "", "\(state.qna.upvotes(question.questionId))", "", "", "", "", "",
                    question.isBlocked ? "blocked" : "",
                ] + [question.askedAt])
        }
        return rows.map { $0.map(field).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
    }

    /// A quiz, one row per player and question, best player first: the answer, whether it was
    /// right, the time it took, the points; and each player's final rank and score.
    public static func quizCSV(_ state: SessionState) -> String {
        var rows = [
            [
                "rank", "nickname", "score", "question_number", "poll_id", "question", "answer", "correct", "time_seconds", "points",
                "counts",
            ]
        ]
        let questions = state.polls.enumerated().filter { $0.element.quiz != nil && $0.element.state == .closed }
        for player in state.standings().rows {
            for (index, poll) in questions {
                let label = Dictionary(poll.options.map { ($0.id, $0.label) }, uniquingKeysWith: { a, _ in a })
                var answer = "", correct = "", time = "", points = "0"
                if case .choice(let ids) = state.ballot(of: player.participant, on: poll.id) {
                    answer = ids.map { label[$0] ?? $0 }.joined(separator: "; ")
                }
                if let mark = state.quizMark(of: player.participant, on: poll.id) {
                    correct = mark.correct ? "yes" : "no"
                    time = String(format: "%.3f", Double(mark.elapsedMs) / 1000)
                    points = "\(mark.points)"
                }
                rows.append([
                    "\(player.rank)", player.nickname, "\(player.score)", "\(index + 1)", poll.id, poll.question, answer, correct, time,
                    points, state.countsTowardScores(poll.id) ? "yes" : "no",
                ])
            }
        }
        return rows.map { $0.map(field).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
    }

    private static func number(_ value: Double?) -> String {
        guard let value else { return "" }
        return value == value.rounded() ? "\(Int(value))" : "\(value)"
    }

    private static func moderation(hidden: Bool?, blocked: Bool?, pending: Bool? = nil) -> String {
        [hidden == true ? "hidden" : nil, blocked == true ? "blocked" : nil, pending == true ? "pending" : nil]
            .compactMap { $0 }.joined(separator: " ")
    }

    /// RFC 4180 quoting; a leading =, +, - or @ is prefixed with ' so a spreadsheet never runs a
    /// participant-written option as a formula.
    static func field(_ value: String) -> String {
        var v = value
        if let first = v.first, "=+-@".contains(first) { v = "'" + v }
        guard v.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) || v != value else { return v }
        return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    struct Document: Encodable {
        struct PollExport: Encodable {
            let poll: Poll
            let results: PollResults?
            let ballots: [Ballot]
        }
        struct Ballot: Encodable {
            /// A pseudonym, never the participant id.
            let participant: String
            /// The ballot in the shape it was sent: `optionIds`, `value`, `ranking`, `words`, or
            /// `answers` (each `{answerId, text}`).
            let ballot: TallyDomain.Ballot
            /// When the ballot was (last) cast, ISO 8601; absent for ballots not yet saved.
            let castAt: String?

            enum CodingKeys: String, CodingKey { case participant, optionIds, value, ranking, words, answers, castAt }
            struct Answer: Encodable {
                let answerId: String
                let text: String
            }

            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(participant, forKey: .participant)
                switch ballot {
                case .choice(let ids): try c.encode(ids, forKey: .optionIds)
                case .scale(let value): try c.encode(value, forKey: .value)
                case .ranking(let ids): try c.encode(ids, forKey: .ranking)
                case .words(let words): try c.encode(words.map(\.text), forKey: .words)
                case .answers(let answers):
                    try c.encode(answers.map { Answer(answerId: $0.answerId, text: $0.text) }, forKey: .answers)
                }
                try c.encodeIfPresent(castAt, forKey: .castAt)
            }
        }
        let sessionId: String
        let title: String
        let joinCode: String
        let state: SessionState.Lifecycle
        let participantCount: Int
        /// `perPoll`: ballots of one person cannot be matched across polls; `linked`: they can.
        let participantPseudonyms: ParticipantPseudonyms.Scope
        let polls: [PollExport]
        /// Audience Q&A: every question not withdrawn, oldest first, without its author.
        let questions: [QuestionView]
        /// A quiz: the final ranking, and each player's answers (players by nickname).
        let quiz: QuizExport?
    }

    struct QuizExport: Encodable {
        struct Player: Encodable {
            let rank: Int
            let nickname: String
            let score: Int
            let answers: [Answer]
        }
        struct Answer: Encodable {
            let pollId: String
            let optionIds: [String]?
            let answered: Bool
            let correct: Bool
            let timeMs: Int64?
            let points: Int
            /// False for questions before the last reset of the scores.
            let counts: Bool
        }
        let ranking: [Player]

        init(_ state: SessionState) {
            let questions = state.polls.filter { $0.quiz != nil && $0.state == .closed }
            ranking = state.standings().rows.map { player in
                Player(
                    rank: player.rank, nickname: player.nickname, score: player.score,
                    answers: questions.map { poll in
                        let mark = state.quizMark(of: player.participant, on: poll.id)
                        var chosen: [String]?
                        if case .choice(let ids) = state.ballot(of: player.participant, on: poll.id) { chosen = ids }
                        return Answer(
                            pollId: poll.id, optionIds: chosen, answered: mark != nil, correct: mark?.correct ?? false,
                            timeMs: mark?.elapsedMs, points: mark?.points ?? 0, counts: state.countsTowardScores(poll.id))
                    })
            }
        }
    }

    /// `times`: when each ballot was last cast (`SQLiteProjection.ballotTimes`), poll → participant → ms.
    /// `pseudonyms` is required: there is no way to write a participant id into an export.
    public static func json(_ state: SessionState, times: [String: [String: Int64]] = [:], pseudonyms: ParticipantPseudonyms) -> Data {
        let document = Document(
            sessionId: state.id, title: state.title, joinCode: state.joinCode.value, state: state.lifecycle,
            participantCount: state.participantCount, participantPseudonyms: pseudonyms.scope,
            polls: state.polls.map { poll in
                Document.PollExport(
                    poll: poll, results: state.completeResults(of: poll.id),
                    ballots: ballots(of: poll.id, in: state, times: times[poll.id] ?? [:], pseudonyms: pseudonyms))
            },
            questions: state.qna.allQuestions.filter { $0.state != .withdrawn }.map {
                $0.view(
                    upvotes: state.qna.upvotes($0.questionId), highlighted: state.qna.highlighted == $0.questionId, for: .presenter,
                    viewer: nil, board: state.qna)
            },
            quiz: state.hasQuiz ? QuizExport(state) : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return (try? encoder.encode(document)) ?? Data("{}".utf8)
    }

    /// A poll's ballots in the order they were cast (the room's answers over time), each under its
    /// pseudonym.
    private static func ballots(
        of poll: PollID, in state: SessionState, times: [String: Int64], pseudonyms: ParticipantPseudonyms
    ) -> [Document.Ballot] {
        let cast: [(participant: String, options: Ballot, at: Int64?)] = state.ballots(on: poll).map { ballot in
            (pseudonyms.pseudonym(session: state.id, poll: poll, participant: ballot.key), ballot.value, times[ballot.key])
        }
        return
            cast
            .sorted { ($0.at ?? .max, $0.participant) < ($1.at ?? .max, $1.participant) }
            .map { ballot in
                Document.Ballot(
                    participant: ballot.participant, ballot: ballot.options,
                    castAt: ballot.at.map { WireFormat.formatTimestamp(Date(timeIntervalSince1970: Double($0) / 1000)) })
            }
    }
}
