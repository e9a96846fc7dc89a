import Foundation
import TallyDomain
import TallyRealtime

/// Results of a session as files people take home: CSV (one row per option) or JSON (polls,
/// counts and the ballots, each under a pseudonym — see `ParticipantPseudonyms`). Used by
/// `tally export` and the presenter's download.
public enum SessionExport {
    public static func csv(_ state: SessionState) -> String {
        var rows = [
            [
                "session_id", "session_title", "poll_number", "poll_id", "question", "kind", "state", "option_id", "option", "votes",
                "total_ballots",
            ]
        ]
        for (index, poll) in state.polls.enumerated() {
            let results = state.results(of: poll.id)
            for option in poll.options {
                let votes = results?.counts.first { $0.optionId == option.id }?.count ?? 0
                rows.append([
                    state.id, state.title, "\(index + 1)", poll.id, poll.question, poll.kind.rawValue, poll.state.rawValue,
                    option.id, option.label, "\(votes)", "\(results?.totalBallots ?? 0)",
                ])
            }
        }
        return rows.map { $0.map(field).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
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
            let optionIds: [String]
            /// When the ballot was (last) cast, ISO 8601; absent for ballots not yet saved.
            let castAt: String?
        }
        let sessionId: String
        let title: String
        let joinCode: String
        let state: SessionState.Lifecycle
        let participantCount: Int
        /// `perPoll`: ballots of one person cannot be matched across polls; `linked`: they can.
        let participantPseudonyms: ParticipantPseudonyms.Scope
        let polls: [PollExport]
    }

    /// `times`: when each ballot was last cast (`SQLiteProjection.ballotTimes`), poll → participant → ms.
    /// `pseudonyms` is required: there is no way to write a participant id into an export.
    public static func json(_ state: SessionState, times: [String: [String: Int64]] = [:], pseudonyms: ParticipantPseudonyms) -> Data {
        let document = Document(
            sessionId: state.id, title: state.title, joinCode: state.joinCode.value, state: state.lifecycle,
            participantCount: state.participantCount, participantPseudonyms: pseudonyms.scope,
            polls: state.polls.map { poll in
                Document.PollExport(
                    poll: poll, results: state.results(of: poll.id),
                    ballots: ballots(of: poll.id, in: state, times: times[poll.id] ?? [:], pseudonyms: pseudonyms))
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return (try? encoder.encode(document)) ?? Data("{}".utf8)
    }

    /// A poll's ballots in the order they were cast (the room's answers over time), each under its
    /// pseudonym.
    private static func ballots(
        of poll: PollID, in state: SessionState, times: [String: Int64], pseudonyms: ParticipantPseudonyms
    ) -> [Document.Ballot] {
        let cast: [(participant: String, options: [OptionID], at: Int64?)] = (state.ballots[poll] ?? [:]).map { ballot in
            (pseudonyms.pseudonym(session: state.id, poll: poll, participant: ballot.key), ballot.value, times[ballot.key])
        }
        return
            cast
            .sorted { ($0.at ?? .max, $0.participant) < ($1.at ?? .max, $1.participant) }
            .map { ballot in
                Document.Ballot(
                    participant: ballot.participant, optionIds: ballot.options,
                    castAt: ballot.at.map { WireFormat.formatTimestamp(Date(timeIntervalSince1970: Double($0) / 1000)) })
            }
    }
}
