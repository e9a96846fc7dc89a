/// What one role may see of a session: the body of `GET /api/v1/sessions/{id}` and of the
/// `stream.reset` event. Built from the same rules as event routing (`SessionEvent.audience`).
public struct SessionView: Codable, Sendable, Equatable {
    public struct PollView: Codable, Sendable, Equatable {
        public var poll: Poll
        /// Absent when the viewer may not see counts: a hidden poll before its reveal, for
        /// anyone but the presenter.
        public var results: PollResults?
        /// Ballots cast so far; every role may know the turnout (absent for drafts' viewers
        /// who see no drafts anyway).
        public var totalBallots: Int
        /// The viewer's own ballot (participants only).
        public var myBallot: [OptionID]?
    }

    public var sessionId: SessionID
    public var title: String
    public var joinCode: String
    public var state: SessionState.Lifecycle
    public var role: Role
    public var participantCount: Int?
    /// False once the presenter closed the session to new participants.
    public var joiningOpen: Bool
    public var openPollId: PollID?
    public var polls: [PollView]
    /// Subscribe to `/events` with `fromEventId` set to this to miss nothing after the snapshot.
    public var lastEventId: String?
    /// Present for participants: their own anonymous id.
    public var participantId: ParticipantID?
}

extension SessionState {
    /// The session as `role` may see it. Drafts only for the presenter; counts of hidden,
    /// unrevealed polls only for the presenter (displays show the room what participants see).
    public func view(for role: Role, participant: ParticipantID? = nil, lastEventId: String?) -> SessionView {
        let visiblePolls = polls.filter { role == .presenter || $0.state != .draft }
        return SessionView(
            sessionId: id,
            title: title,
            joinCode: joinCode.value,
            state: lifecycle,
            role: role,
            participantCount: role == .participant ? nil : participantCount,
            joiningOpen: joiningOpen,
            openPollId: openPollId,
            polls: visiblePolls.map { poll in
                let showCounts = role == .presenter || poll.resultsVisibleToParticipants
                let results = results(of: poll.id)
                return .init(
                    poll: poll,
                    results: showCounts ? results : nil,
                    totalBallots: results?.totalBallots ?? 0,
                    myBallot: participant.flatMap { ballot(of: $0, on: poll.id) }
                )
            },
            lastEventId: lastEventId,
            participantId: role == .participant ? participant : nil
        )
    }
}
