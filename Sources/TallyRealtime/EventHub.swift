import Dispatch
import Foundation
import NIOCore
import Synchronization
import TallyDomain
import TallyEventLog

/// One open stream as the hub knows it: whose it is, and where its events go.
public final class Subscription: Sendable, Hashable {
    public static func == (a: Subscription, b: Subscription) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    let id: Int
    public let sessionId: SessionID
    public let role: Role
    /// The participant whose stream this is.
    public let participant: ParticipantID?
    /// The cap this stream counts against, if any.
    let capKey: String?
    /// What the stream was opened with, opaque to the hub: the server ends streams by it when
    /// that credential is withdrawn (`EventHub.end(where:)`).
    public let credential: (any Sendable)?
    public let sink: any EventSink
    private let reason = Mutex<StreamEnd?>(nil)

    init(
        id: Int, sessionId: SessionID, role: Role, participant: ParticipantID?, capKey: String?, credential: (any Sendable)?,
        sink: any EventSink
    ) {
        self.id = id
        self.capKey = capKey
        self.sessionId = sessionId
        self.role = role
        self.participant = participant
        self.credential = credential
        self.sink = sink
    }

    /// Why the stream ended, if it has.
    public var endReason: StreamEnd? { reason.withLock { $0 } }

    /// Ends the stream; the first call decides why and tells the sink. True if this call did.
    @discardableResult
    public func end(_ why: StreamEnd) -> Bool {
        let first = reason.withLock { reason in
            guard reason == nil else { return false }
            reason = why
            return true
        }
        if first { sink.close(why) }
        return first
    }
}

/// Routes durable events to the open streams of their session, by role. It only routes:
/// encoding is `WireFormat`'s, replay is `ReplayCache`'s, writing is each `EventSink`'s.
///
/// Batches arrive from the log's commit path and are encoded on the hub's own serial queue,
/// so fan-out never delays the next group commit, and order is kept end to end.
public final class EventHub: Sendable {
    public let wire: WireFormat
    public let metrics: RealtimeMetrics
    public let replayCache: ReplayCache
    private let state: Mutex<State>
    private let queue = DispatchQueue(label: "tally.fanout")

    private struct State {
        var sessions: [SessionID: [Int: Subscription]] = [:]
        /// Open streams per cap key ("session/participant", or a caller-chosen group).
        var perKey: [String: Int] = [:]
        /// Shutting down: no new streams.
        var closed = false
        var nextId = 0
        /// Highest sequence handed to subscribers; everything up to it is durable.
        var published: UInt64
        var count = 0
    }

    /// One participant may hold this many streams at once (a phone has one; a few tabs are
    /// fine; a script opening hundreds on one identity is not).
    public static let streamsPerParticipant = 4

    public init(epoch: String, publishedThrough: UInt64, metrics: RealtimeMetrics) {
        self.wire = WireFormat(epoch: epoch)
        self.metrics = metrics
        self.replayCache = ReplayCache(firstLive: publishedThrough + 1)
        self.state = Mutex(State(published: publishedThrough))
    }

    /// Why a stream was not registered.
    public enum Refusal: Error, Sendable {
        /// The participant (or the cap's group) already holds `limit` streams.
        case tooManyStreams(limit: Int)
        /// The server is shutting down.
        case closing
    }

    /// Registers a stream. Returns the sequence up to which events were already published: the
    /// caller replays (from, that] itself; everything after it reaches the sink. A participant
    /// may hold `streamsPerParticipant` streams; `group` caps other streams together (e.g. the
    /// displays one address opened with a join code).
    public func subscribe(
        sessionId: SessionID, role: Role, participant: ParticipantID? = nil, group: (key: String, limit: Int)? = nil,
        credential: (any Sendable)? = nil, sink: any EventSink
    ) throws(Refusal) -> (Subscription, publishedThrough: UInt64) {
        let cap = participant.map { (key: sessionId + "/" + $0, limit: Self.streamsPerParticipant) } ?? group
        let result: Result<(Subscription, UInt64), Refusal> = state.withLock { state in
            guard !state.closed else { return .failure(.closing) }
            if let cap {
                guard state.perKey[cap.key, default: 0] < cap.limit else { return .failure(.tooManyStreams(limit: cap.limit)) }
                state.perKey[cap.key, default: 0] += 1
            }
            state.nextId += 1
            let subscription = Subscription(
                id: state.nextId, sessionId: sessionId, role: role, participant: participant, capKey: cap?.key,
                credential: credential, sink: sink)
            state.sessions[sessionId, default: [:]][subscription.id] = subscription
            state.count += 1
            return .success((subscription, state.published))
        }
        switch result {
        case .success(let registered): return registered
        case .failure(let refusal): throw refusal
        }
    }

    /// Forgets a stream whose connection has gone (ending it first if nothing else did). Safe to
    /// call more than once.
    public func unsubscribe(_ subscription: Subscription) {
        subscription.end(.client)
        state.withLock { state in
            if state.sessions[subscription.sessionId]?.removeValue(forKey: subscription.id) != nil {
                state.count -= 1
                if let key = subscription.capKey {
                    state.perKey[key, default: 1] -= 1
                    if state.perKey[key] == 0 { state.perKey[key] = nil }
                }
            }
            if state.sessions[subscription.sessionId]?.isEmpty == true {
                state.sessions[subscription.sessionId] = nil
            }
        }
    }

    /// Ends every stream (of `sessionId`, or of all sessions) that `matches` picks, with
    /// `reason`. Returns how many were ended now.
    @discardableResult
    public func end(
        _ reason: StreamEnd = .revoked, sessionId: SessionID? = nil, where matches: (Subscription) -> Bool = { _ in true }
    ) -> Int {
        let streams = state.withLock { state in
            if let sessionId { return state.sessions[sessionId].map { Array($0.values) } ?? [] }
            return state.sessions.values.flatMap(\.values)
        }.filter(matches)
        return streams.reduce(0) { $0 + ($1.end(reason) ? 1 : 0) }
    }

    public var connectionCount: Int { state.withLock { $0.count } }

    /// Open streams of each session by transport (the operator's console): what the
    /// subscriptions' sinks are, counted under the hub's lock.
    public func openStreams() -> [SessionID: [Transport: Int]] {
        state.withLock { state in
            state.sessions.mapValues { streams in
                streams.values.reduce(into: [Transport: Int]()) { counts, stream in
                    counts[stream.sink is SSESink ? .sse : .webSocket, default: 0] += 1
                }
            }
        }
    }

    /// Called by the event log, in order, once per durable batch (on its commit path: this
    /// only hands the batch to the fan-out queue).
    public func publish(_ batch: [LoggedEvent]) {
        queue.async {
            // A large batch (a quiz question's close: one score per player) goes out in slices,
            // so its first events — the leaderboard every screen waits for — are not held back
            // until the last score is encoded.
            var start = batch.startIndex
            while start < batch.endIndex {
                let end = min(start + Self.routingSlice, batch.endIndex)
                self.route(batch[start..<end])
                start = end
            }
        }
    }

    static let routingSlice = 256

    /// Waits until every batch handed to `publish` so far has been routed (tests, shutdown).
    public func settle() {
        queue.sync {}
    }

    private func route(_ batch: ArraySlice<LoggedEvent>) {
        guard let last = batch.last else { return }
        metrics.eventsPublished.increment(by: Int64(batch.count))
        // Encode once per event; the buffers are shared by all receivers. Ballots go to nobody:
        // no encoding is spent on them.
        let encoded = batch.compactMap { $0.event.audience.isEmpty ? nil : ($0.sessionId, wire.encode($0)) }
        // The cache first: a stream that subscribes once `published` has moved must find every
        // event up to it there (or go to the log).
        replayCache.record(encoded)
        let targets: [(EncodedEvent, [Subscription])] = state.withLock { state in
            state.published = last.sequence
            // An event addressed to one participant (their quiz score; a close sends one per
            // player) finds that participant's streams through an index made once per batch.
            var streamsOf: [SessionID: [ParticipantID: [Subscription]]] = [:]
            return encoded.compactMap { sessionId, event in
                guard let subscribers = state.sessions[sessionId] else { return nil }
                if let addressee = event.audience.addressee {
                    if streamsOf[sessionId] == nil {
                        streamsOf[sessionId] = Dictionary(grouping: subscribers.values.filter { $0.participant != nil }) { $0.participant! }
                    }
                    let streams = streamsOf[sessionId]?[addressee] ?? []
                    return (event, streams.filter { event.audience.reaches($0.role, participant: $0.participant) })
                }
                return (event, subscribers.values.filter { event.audience.reaches($0.role, participant: $0.participant) })
            }
        }
        // Grouped by event loop: one hop per loop per batch, every event handed to every sink
        // there, each sink writing and flushing once.
        var byLoop: [ObjectIdentifier: (any EventLoop, [Subscription: [EncodedEvent]])] = [:]
        for (event, subscribers) in targets {
            for subscriber in subscribers {
                let loop = subscriber.sink.eventLoop
                byLoop[ObjectIdentifier(loop), default: (loop, [:])].1[subscriber, default: []].append(event)
            }
        }
        for (loop, work) in byLoop.values {
            let metrics = self.metrics
            loop.execute {
                let start = DispatchTime.now().uptimeNanoseconds
                var written = 0
                for (subscriber, events) in work {
                    let delivery = subscriber.sink.deliver(events)
                    written += delivery.written
                    if delivery.tooSlow { self.endSlow(subscriber) }
                }
                let end = DispatchTime.now().uptimeNanoseconds
                metrics.fanoutBatch.recordNanoseconds(Int64(end &- start))
                if let first = work.first?.value.first {
                    metrics.delivered(written, oldestPublishedAt: first.publishedAt, now: end)
                }
            }
        }
    }

    /// Ends a stream whose client is not keeping up (counted once, whoever noticed).
    func endSlow(_ subscription: Subscription) {
        if subscription.end(.slowConsumer) { metrics.slowConsumers.increment() }
    }

    /// The keeper's tick: SSE keep-alives, and the time bound on SSE streams (WebSocket streams
    /// are pinged and bounded on their own event loop).
    public func keepAlive(stallLimit: Duration = .seconds(30)) {
        let all = state.withLock { $0.sessions.values.flatMap(\.values) }
        for subscriber in all where subscriber.sink.keepAlive(stallLimit: stallLimit).tooSlow {
            endSlow(subscriber)
        }
    }

    /// Ends every stream (graceful shutdown), after what was already published has been handed
    /// to the sinks: on each loop the last events are written before the close frame.
    public func endAll() {
        state.withLock { $0.closed = true }
        settle()
        end(.shutdown)
    }

    /// A stream's starting point: what to send first and the sequence it covers.
    public struct Start: Sendable {
        public let subscription: Subscription
        public let backlog: [EncodedEvent]
        public let cursor: UInt64
        public init(subscription: Subscription, backlog: [EncodedEvent], cursor: UInt64) {
            self.subscription = subscription
            self.backlog = backlog
            self.cursor = cursor
        }
    }

    /// Replay for a stream subscribed at `published` that has seen up to `position`: the
    /// session's events in (position, published] for `role` (and for a participant, their own
    /// events), from memory or else from `log`;
    /// nil when they cannot all be served (the caller then sends `stream.reset`).
    public func replay(
        sessionId: SessionID, role: Role, participant: ParticipantID? = nil, after position: UInt64, through published: UInt64,
        log: any EventLog, retention: TimeInterval
    ) async -> [EncodedEvent]? {
        let notBefore = Date(timeIntervalSinceNow: -retention)
        // The room never replays across a retraction: the events before it would carry the
        // text the presenter took back. Nil sends the caller a `stream.reset` (today's view).
        if let recent = replayCache.events(of: sessionId, after: position, through: published, notBefore: notBefore) {
            if role != .presenter, recent.contains(where: \.retracts) { return nil }
            metrics.replays.increment()
            return recent.filter { $0.audience.reaches(role, participant: participant) }
        }
        if let older = await log.replayEvents(of: sessionId, after: position, through: published) {
            if role != .presenter, older.contains(where: \.event.retractsFromRoom) { return nil }
            metrics.replays.increment()
            return older.filter { $0.event.audience.reaches(role, participant: participant) }.map(wire.encode)
        }
        return nil
    }
}
