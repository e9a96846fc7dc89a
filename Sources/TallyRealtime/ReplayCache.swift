import Foundation
import Synchronization
import TallyDomain

/// Each session's most recent events, already encoded: replay for a client that was away
/// briefly (the reconnect storm after a Wi-Fi blip) is served from these shared buffers instead
/// of decoding and re-encoding ring records per client.
///
/// Bounded: `capacity` events for each of at most `sessions` sessions (the most recently
/// active); ≈ 0.5–1 KB an event, ≤ ~100 MB in all. What is not here is read from the log.
public final class ReplayCache: Sendable {
    public static let defaultCapacity = 2048
    public static let defaultSessions = 64

    private let capacity: Int
    private let sessions: Int
    /// The first sequence published by this process: older events are only in the log.
    private let firstLive: UInt64
    private let state = Mutex(State())

    private struct State {
        var recent: [SessionID: RecentEvents] = [:]
        var clock: UInt64 = 0
        /// Some session has been evicted: a session seen from now on may have been one of them,
        /// so its cache is complete only from its next event.
        var evicted = false
    }

    public init(firstLive: UInt64, capacity: Int = defaultCapacity, sessions: Int = defaultSessions) {
        precondition(capacity > 0 && sessions > 0)
        self.firstLive = firstLive
        self.capacity = capacity
        self.sessions = sessions
    }

    /// Keeps a durable batch (called in sequence order by the hub, once per batch).
    func record(_ batch: [(SessionID, EncodedEvent)]) {
        state.withLock { state in
            state.clock += 1
            for (sessionId, event) in batch {
                if state.recent[sessionId] == nil, state.recent.count >= sessions,
                    let quietest = state.recent.min(by: { $0.value.touched < $1.value.touched })?.key
                {
                    state.recent[quietest] = nil  // its replays fall back to the log
                    state.evicted = true
                }
                let completeFrom = state.evicted ? event.sequence : firstLive
                state.recent[sessionId, default: RecentEvents(completeFrom: completeFrom)].append(event, capacity: capacity)
                state.recent[sessionId]!.touched = state.clock
            }
        }
    }

    /// The session's encoded events in (after, through] if they are all still here and none is
    /// older than `notBefore` (replay never serves what retention has expired).
    public func events(of sessionId: SessionID, after: UInt64, through: UInt64, notBefore: Date) -> [EncodedEvent]? {
        state.withLock { $0.recent[sessionId]?.range(after: after, through: through, notBefore: notBefore) }
    }

    /// A session's last `capacity` events (those with an audience), and from which sequence on
    /// the session's events are complete here.
    struct RecentEvents {
        var events: [EncodedEvent] = []
        var head = 0
        /// When this session last published (for evicting the quietest session).
        var touched: UInt64 = 0
        /// Every event of the session with a sequence ≥ this is held (or had no audience).
        var completeFrom: UInt64

        mutating func append(_ event: EncodedEvent, capacity: Int) {
            if events.count < capacity {
                events.append(event)
            } else {
                completeFrom = events[head].sequence + 1
                events[head] = event
                head = (head + 1) % capacity
            }
        }

        func range(after: UInt64, through: UInt64, notBefore: Date) -> [EncodedEvent]? {
            guard after + 1 >= completeFrom else { return nil }
            var result: [EncodedEvent] = []
            for i in 0..<events.count {
                let event = events[(head + i) % events.count]
                if event.sequence > after && event.sequence <= through {
                    if event.timestamp < notBefore { return nil }
                    result.append(event)
                }
            }
            return result
        }
    }
}
