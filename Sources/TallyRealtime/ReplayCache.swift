import Foundation
import Synchronization
import TallyDomain

/// Each session's most recent events, already encoded: replay for a client that was away
/// briefly (the reconnect storm after a Wi-Fi blip) is served from these shared buffers instead
/// of decoding and re-encoding ring records per client.
///
/// Bounded: at most `capacity` events and `maxBytes` bytes (both framings counted) for each of
/// at most `sessions` sessions. Events addressed to one participant (a quiz close sends one
/// score per player) count against the bytes only, so a close of a couple of thousand players
/// does not push the leaderboard and what came before out of memory: phones reconnecting across
/// it are served from here, not from the ring one by one.
///
/// at most `sessions` sessions (the most recently active): ≤ 128 MiB in all, and far less in
/// practice (a choice poll's events are a few hundred bytes; a word cloud's results up to 16 KiB).
/// What is not here is read from the log.
public final class ReplayCache: Sendable {
    public static let defaultCapacity = 2048
    public static let defaultSessions = 64
    public static let defaultMaxBytes = 2 << 20

    private let capacity: Int
    private let maxBytes: Int
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

    public init(firstLive: UInt64, capacity: Int = defaultCapacity, sessions: Int = defaultSessions, maxBytes: Int = defaultMaxBytes) {
        precondition(capacity > 0 && sessions > 0 && maxBytes > 0)
        self.firstLive = firstLive
        self.capacity = capacity
        self.sessions = sessions
        self.maxBytes = maxBytes
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
                state.recent[sessionId, default: RecentEvents(completeFrom: completeFrom)].append(
                    event, capacity: capacity, maxBytes: maxBytes)
                state.recent[sessionId]!.touched = state.clock
            }
        }
    }

    /// The session's encoded events in (after, through] if they are all still here and none is
    /// older than `notBefore` (replay never serves what retention has expired).
    public func events(of sessionId: SessionID, after: UInt64, through: UInt64, notBefore: Date) -> [EncodedEvent]? {
        state.withLock { $0.recent[sessionId]?.range(after: after, through: through, notBefore: notBefore) }
    }

    /// A session's last events (those with an audience), within `capacity` and `maxBytes`, and
    /// from which sequence on the session's events are complete here.
    struct RecentEvents {
        /// Oldest first from `start`; slots before it are evicted and compacted away in bulk.
        var events: [EncodedEvent] = []
        var start = 0
        var bytes = 0
        /// Events held that are not addressed to one participant (what `capacity` counts).
        var broadcast = 0
        /// When this session last published (for evicting the quietest session).
        var touched: UInt64 = 0
        /// Every event of the session with a sequence ≥ this is held (or had no audience).
        var completeFrom: UInt64

        static func size(_ event: EncodedEvent) -> Int { event.sse.readableBytes + event.frame.readableBytes }

        mutating func append(_ event: EncodedEvent, capacity: Int, maxBytes: Int) {
            let size = Self.size(event)
            let counted = event.audience.addressee == nil
            while start < events.count, (counted && broadcast >= capacity) || bytes + size > maxBytes {
                completeFrom = events[start].sequence + 1
                bytes -= Self.size(events[start])
                if events[start].audience.addressee == nil { broadcast -= 1 }
                start += 1
            }
            if start >= capacity {
                events.removeFirst(start)
                start = 0
            }
            events.append(event)
            bytes += size
            if counted { broadcast += 1 }
        }

        func range(after: UInt64, through: UInt64, notBefore: Date) -> [EncodedEvent]? {
            guard after + 1 >= completeFrom else { return nil }
            var result: [EncodedEvent] = []
            for event in events[start...] where event.sequence > after && event.sequence <= through {
                if event.timestamp < notBefore { return nil }
                result.append(event)
            }
            return result
        }
    }
}
