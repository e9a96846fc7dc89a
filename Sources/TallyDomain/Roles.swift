/// Who is looking at a session. Every event is addressed to a set of roles, and a stream only
/// carries what its role may see — the same rule for live delivery and for replay.
public enum Role: String, Codable, Sendable, CaseIterable {
    case presenter
    case display
    case participant
}

/// Who receives an event: a set of roles — or one participant alone (their own quiz score), the
/// same rule for live delivery and for replay.
public struct Audience: Sendable, Hashable, ExpressibleByArrayLiteral {
    /// The roles, as bits (presenter 1, display 2, participant 4).
    public let roles: Int
    /// Set: the event is one participant's and reaches only their streams.
    public let addressee: ParticipantID?

    init(roles: Int, addressee: ParticipantID? = nil) {
        self.roles = roles
        self.addressee = addressee
    }

    public init(arrayLiteral elements: Audience...) {
        self.init(roles: elements.reduce(0) { $0 | $1.roles })
    }

    public static let presenter = Audience(roles: 1 << 0)
    public static let display = Audience(roles: 1 << 1)
    public static let participant = Audience(roles: 1 << 2)
    /// Events recorded for the log only (a single ballot): never sent to any client.
    public static let nobody: Audience = []
    public static let everyone: Audience = [.presenter, .display, .participant]

    /// One participant, and nobody else (not the presenter either).
    public static func only(_ participant: ParticipantID) -> Audience {
        Audience(roles: participant.isEmpty ? 0 : Audience.participant.roles, addressee: participant)
    }

    public var isEmpty: Bool { roles == 0 }

    /// Whether a stream of `role` (a participant's: `participant`) receives the event.
    public func reaches(_ role: Role, participant: ParticipantID?) -> Bool {
        let bit =
            switch role {
            case .presenter: Audience.presenter.roles
            case .display: Audience.display.roles
            case .participant: Audience.participant.roles
            }
        guard roles & bit != 0 else { return false }
        guard let addressee else { return true }
        return role == .participant && participant == addressee
    }
}
