/// Who is looking at a session. Every event is addressed to a set of roles, and a stream only
/// carries what its role may see — the same rule for live delivery and for replay.
public enum Role: String, Codable, Sendable, CaseIterable {
    case presenter
    case display
    case participant
}

/// The set of roles an event is delivered to.
public struct Audience: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let presenter = Audience(rawValue: 1 << 0)
    public static let display = Audience(rawValue: 1 << 1)
    public static let participant = Audience(rawValue: 1 << 2)
    /// Events recorded for the log only (a single ballot): never sent to any client.
    public static let nobody: Audience = []
    public static let everyone: Audience = [.presenter, .display, .participant]

    public func includes(_ role: Role) -> Bool {
        switch role {
        case .presenter: contains(Audience.presenter)
        case .display: contains(Audience.display)
        case .participant: contains(Audience.participant)
        }
    }
}
