import Foundation
import TallyDomain

/// An event as the log holds it: the fact, its position, and when it was appended.
public struct LoggedEvent: Sendable, Equatable {
    /// Position in the log: strictly increasing, contiguous across all sessions.
    public let sequence: UInt64
    public let sessionId: SessionID
    /// Wall-clock time of the append (milliseconds). Informational: ordering never uses it.
    public let timestamp: Date
    public let event: SessionEvent

    public init(sequence: UInt64, sessionId: SessionID, timestamp: Date, event: SessionEvent) {
        self.sequence = sequence
        self.sessionId = sessionId
        self.timestamp = timestamp
        self.event = event
    }
}

/// The public, opaque id of an event: `<epoch>-<sequence>`.
///
/// The epoch is a random id made when the log is created, so an id from a wiped or replaced
/// data directory is recognised as foreign instead of silently meaning another event.
public struct EventID: Hashable, Sendable, CustomStringConvertible {
    public let epoch: String
    public let sequence: UInt64

    public init(epoch: String, sequence: UInt64) {
        self.epoch = epoch
        self.sequence = sequence
    }

    /// Parses a client-supplied id; nil for anything malformed.
    public init?(_ text: String) {
        guard text.utf8.count <= 64 else { return nil }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy(\.isHexDigit),
            let sequence = UInt64(parts[1])
        else { return nil }
        self.epoch = String(parts[0])
        self.sequence = sequence
    }

    public var description: String { "\(epoch)-\(sequence)" }
}

/// How far an append must get before the command that caused it is acknowledged.
public enum Durability: String, Sendable, CaseIterable {
    /// On stable storage (fsync at commit; concurrent commands share one sync). Survives a power cut.
    case fsync
    /// Handed to the operating system. Survives a crash of the process, not a power cut.
    case os
}

/// Errors of the event log. Once a write fails the log refuses further appends: the in-memory
/// state may be ahead of the disk, so the process must restart and recover from the log.
public enum EventLogError: Error, CustomStringConvertible {
    case writeFailed(String)
    case corruptRecord(sequence: UInt64, reason: String)
    /// The ring is full of events the projection has not caught up with yet; retry shortly.
    case busy
    case eventTooLarge(Int)

    public var description: String {
        switch self {
        case .writeFailed(let m): "event log write failed: \(m)"
        case .corruptRecord(let s, let r): "event log record \(s) is unreadable: \(r)"
        case .busy: "the event ring is full of events not yet saved to the database; retry in a moment"
        case .eventTooLarge(let n): "an event of \(n) bytes is larger than the ring accepts"
        }
    }
}

/// How far back the log reaches, for `/readyz` and the logs.
public struct LogReach: Sendable, Equatable {
    /// Oldest event still served for replay (nil when none).
    public var oldestSequence: UInt64?
    public var oldestTimestamp: Date?
    public var newestSequence: UInt64
    /// Events retained (including expired ones not yet overwritten).
    public var retainedEvents: Int
    /// True when the store has dropped events younger than the retention age for space.
    public var limitedByCapacity: Bool
    /// The store's fixed size in bytes, when it has one (the ring file's).
    public var capacityBytes: Int? = nil

    public init(
        oldestSequence: UInt64? = nil, oldestTimestamp: Date? = nil, newestSequence: UInt64, retainedEvents: Int, limitedByCapacity: Bool,
        capacityBytes: Int? = nil
    ) {
        self.oldestSequence = oldestSequence
        self.oldestTimestamp = oldestTimestamp
        self.newestSequence = newestSequence
        self.retainedEvents = retainedEvents
        self.limitedByCapacity = limitedByCapacity
        self.capacityBytes = capacityBytes
    }
}

/// The ordered, durable log every state change goes through.
///
/// Contract (for an `AppendingEventLog`; a cluster's log keeps the same order and durability
/// through its writer): `append` assigns sequence numbers in call order and returns at once; the events
/// become durable in that order; `onDurable` observers see each batch exactly once, in order,
/// only after it is durable (persist before broadcast). Callers that must not acknowledge
/// before durability await `waitUntilDurable`.
public protocol EventLog: AnyObject, Sendable {
    /// Random id of this log, part of every `EventID`.
    var epoch: String { get }
    /// Highest sequence known to be durable (0 when empty).
    var durableSequence: UInt64 { get }
    /// Nil while healthy; the failure that stopped the log otherwise.
    var failure: (any Error)? { get }

    /// Returns once every event up to `sequence` is durable (or throws if the log failed).
    func waitUntilDurable(_ sequence: UInt64) async throws
    /// Registers the observer that receives durable batches (the fan-out).
    func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void)
    /// Events of one session with `after < sequence <= through`, in order; nil when that range
    /// can no longer be served completely (overwritten, expired, or across a corrupt record).
    func events(of sessionId: SessionID, after: UInt64, through: UInt64) -> [LoggedEvent]?
    /// The same range for a stream's replay, where reading may wait (a database's log).
    func replayEvents(of sessionId: SessionID, after: UInt64, through: UInt64) async -> [LoggedEvent]?
    /// How far back replay reaches.
    func reach() -> LogReach
}

extension EventLog {
    public func replayEvents(of sessionId: SessionID, after: UInt64, through: UInt64) async -> [LoggedEvent]? {
        events(of: sessionId, after: after, through: through)
    }
}

/// A log this process appends to itself, inside a session's lock (the embedded ring): `append`
/// assigns the sequences at once and durability follows. A cluster's log is appended to by
/// the cluster writer instead, under the database's lock.
public protocol AppendingEventLog: EventLog {
    /// Queues events of one session for writing; returns them with their sequence numbers.
    func append(sessionId: SessionID, events: [SessionEvent]) throws -> [LoggedEvent]
}
