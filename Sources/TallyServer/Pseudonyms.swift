import TallyDomain

/// How an export names the person behind a ballot. Never the participant id (it is inside their
/// token, and the same across polls): a keyed hash of it, so a results file passed around after
/// the event cannot be joined with anything else, nor one person's answers lined up across polls
/// unless the presenter asked for that.
///
/// `perPoll` (the default): one pseudonym per participant *per poll* — HMAC-SHA256(secret,
/// "export.poll.<session>.<poll>.<participant>") — so the ballots of one poll stay distinct but
/// nobody can tell that the same phone answered poll 1 and poll 2.
/// `linked` (`?linkParticipants=true`, `tally export --link-participants`): one pseudonym per
/// participant for the whole session — HMAC-SHA256(secret, "export.session.<session>.<participant>").
///
/// The key is the appliance's signing secret, so the server and `tally export` agree, and nobody
/// without the data directory can recompute or reverse a pseudonym. The "export." prefix keeps
/// these messages apart from token bodies ("op.", "pr.", "di.", "pa.") and join-link keys
/// ("join-link."): a pseudonym is never a MAC of anything else the box hands out.
public struct ParticipantPseudonyms: Sendable {
    public enum Scope: String, Sendable, Encodable {
        case perPoll
        case linked
    }

    public let scope: Scope
    private let credentials: Credentials

    public init(credentials: Credentials, scope: Scope) {
        self.credentials = credentials
        self.scope = scope
    }

    /// 9 bytes of the MAC as 12 base64url characters: 72 bits, so two participants of a session
    /// never share one in practice, and short enough to read in a spreadsheet.
    public func pseudonym(session: SessionID, poll: PollID, participant: ParticipantID) -> String {
        let message =
            switch scope {
            case .perPoll: "export.poll.\(session).\(poll).\(participant)"
            case .linked: "export.session.\(session).\(participant)"
            }
        return credentials.digest(message, bytes: 9)
    }
}
