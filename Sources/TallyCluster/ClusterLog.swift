import Foundation
import Synchronization
import TallyDomain
import TallyEventLog

/// The cluster's event log as one instance sees it: what it has folded and handed to its
/// subscribers (`durableSequence`), replay from PostgreSQL, and whether PostgreSQL answers.
///
/// Appends do not come through here: the cluster writer decides and appends under the log's
/// lock (`ClusterStore.appendUnderLock`) and reports each committed or caught-up batch with
/// `delivered`, in sequence order. Everything delivered is committed, so it is durable.
public final class ClusterLog: EventLog {
    public let epoch: String
    public let store: ClusterStore
    /// How far back replay reaches (the same 24 h as the ring's default).
    public let retention: TimeInterval
    private let state: Mutex<State>

    private struct State {
        var delivered: UInt64
        var newestTimestamp: Date?
        var observers: [@Sendable ([LoggedEvent]) -> Void] = []
        /// Why PostgreSQL cannot be used right now (queries failing), or nil.
        var storeOutage: String?
        /// Why this instance is not listening for notifications right now, or nil.
        var listenerOutage: String? = "not listening yet"
        var oldest: (sequence: UInt64, at: Date)?
    }

    public init(epoch: String, store: ClusterStore, retention: TimeInterval) {
        self.epoch = epoch
        self.store = store
        self.retention = retention
        self.state = Mutex(State(delivered: 0, newestTimestamp: nil))
    }

    /// At start, once the log has been folded (before anyone subscribes): where delivery begins.
    public func folded(through sequence: UInt64, newestTimestamp: Date?) {
        state.withLock { state in
            state.delivered = sequence
            state.newestTimestamp = newestTimestamp
        }
    }

    public var durableSequence: UInt64 { state.withLock { $0.delivered } }
    public var newestTimestamp: Date? { state.withLock { $0.newestTimestamp } }

    /// Never set: a cluster instance does not fail-stop. PostgreSQL going away is an outage
    /// (`outage`) that ends by itself; commands get 503 meanwhile.
    public var failure: (any Error)? { nil }

    /// Why this instance cannot serve commands or keep up right now (nil when it can).
    public var outage: String? { state.withLock { $0.storeOutage ?? $0.listenerOutage } }
    /// Why commands are refused right now: PostgreSQL does not answer queries.
    public var storeOutage: String? { state.withLock { $0.storeOutage } }

    public func storeAnswered() { state.withLock { $0.storeOutage = nil } }
    public func storeFailed(_ reason: String) { state.withLock { $0.storeOutage = reason } }
    public func listening(_ reason: String?) { state.withLock { $0.listenerOutage = reason } }
    public func noteOldest(_ oldest: (sequence: UInt64, at: Date)?) { state.withLock { $0.oldest = oldest } }

    /// Every batch the writer commits or catches up on is committed already.
    public func waitUntilDurable(_ sequence: UInt64) async throws {}

    public func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void) {
        state.withLock { $0.observers.append(observer) }
    }

    /// The writer's report of committed events, in sequence order, exactly once each.
    public func delivered(_ batch: [LoggedEvent]) {
        guard let last = batch.last else { return }
        let observers = state.withLock { state in
            state.delivered = last.sequence
            state.newestTimestamp = last.timestamp
            return state.observers
        }
        for observer in observers { observer(batch) }
    }

    /// Replay is read from PostgreSQL (`replayEvents`); nothing is served without waiting.
    public func events(of sessionId: SessionID, after: UInt64, through: UInt64) -> [LoggedEvent]? { nil }

    /// A session's events in (after, through] from the table; nil when any is older than the
    /// retention age (the window replay promises), when there are more than a stream may be
    /// handed, or when PostgreSQL does not answer — the client then gets `stream.reset`.
    public func replayEvents(of sessionId: SessionID, after: UInt64, through: UInt64) async -> [LoggedEvent]? {
        guard through > after else { return [] }
        guard let events = try? await store.events(of: sessionId, after: after, through: through, limit: 4096) else { return nil }
        let notBefore = Date(timeIntervalSinceNow: -retention)
        if events.contains(where: { $0.timestamp < notBefore }) { return nil }
        return events
    }

    public func reach() -> LogReach {
        state.withLock { state in
            let oldest = state.oldest.flatMap { $0.at >= Date(timeIntervalSinceNow: -retention) ? $0 : nil }
            return LogReach(
                oldestSequence: oldest?.sequence, oldestTimestamp: oldest?.at, newestSequence: state.delivered,
                retainedEvents: oldest.map { Int(state.delivered - $0.sequence + 1) } ?? 0, limitedByCapacity: false, capacityBytes: nil)
        }
    }
}
