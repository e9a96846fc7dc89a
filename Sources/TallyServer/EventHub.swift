import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import TallyDomain
import TallyEventLog

/// One event encoded for the wire, once, and shared by every connection that receives it.
struct EncodedEvent: Sendable {
    let sequence: UInt64
    let audience: Audience
    /// The JSON envelope (a WebSocket text frame's payload).
    let json: ByteBuffer
    /// The same envelope as an SSE frame (`id:`, `event:`, `data:`).
    let sse: ByteBuffer
    /// The same envelope as a complete WebSocket text frame (server frames are unmasked), so
    /// the bytes on the wire are built once, not once per connection.
    let frame: ByteBuffer
    /// When it was handed to fan-out (monotonic ns), for the delivery-latency histogram.
    let publishedAt: UInt64
    /// The event's own time (for retention when replayed from memory).
    let timestamp: Date
}

/// What a stream's queue carries.
enum StreamItem: Sendable {
    case event(EncodedEvent)
    /// SSE keep-alive comment; WebSocket uses protocol pings instead.
    case heartbeat
}

/// Why a stream ended from the server's side.
enum StreamEnd: Sendable {
    /// The client could not keep up: its queue passed the limit. It resumes with `fromEventId`.
    case slowConsumer
    /// The server is shutting down.
    case shutdown
    /// The client went away (or the handler finished).
    case client
    /// The link (token) the stream was opened with was rotated: it may not reconnect with it.
    case revoked
}

/// The JSON envelope of the ADR: `{eventId, eventType, timestamp, sessionId, payload}`.
struct Envelope: Encodable {
    let eventId: String
    let eventType: String
    let timestamp: String
    let sessionId: String
    let payload: any Encodable

    enum CodingKeys: String, CodingKey { case eventId, eventType, timestamp, sessionId, payload }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventId, forKey: .eventId)
        try c.encode(eventType, forKey: .eventType)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(sessionId, forKey: .sessionId)
        try payload.encode(to: c.superEncoder(forKey: .payload))
    }
}

/// A subscriber's queue. Bounded: a client that stops reading is disconnected, never allowed
/// to hold memory without limit or slow the broadcast for everyone else.
final class Subscription: Sendable, Hashable {
    static func == (a: Subscription, b: Subscription) -> Bool { a === b }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    let id: Int
    let sessionId: SessionID
    let role: Role
    /// The participant whose stream this is (for the per-participant cap).
    let participant: ParticipantID?
    /// The presenter or display link the stream was opened with (ended when it is rotated).
    let link: SessionLink?
    /// The operator sign-in the stream was opened with (ended when it is revoked).
    let operatorSignIn: Credentials.Facts?
    let stream: AsyncStream<StreamItem>
    private let continuation: AsyncStream<StreamItem>.Continuation
    /// Why the server ended the stream (once decided), and who to tell.
    private struct Ending {
        var reason: StreamEnd?
        var action: (@Sendable (StreamEnd) -> Void)?
    }
    private let ending = Mutex(Ending())
    private let metrics: ServerMetrics
    /// Items in this queue now (the gauge is the sum over all queues).
    private let pending = Atomic<Int>(0)
    /// Bytes queued for an SSE stream, and the most it may hold: a client that stops reading
    /// is cut off by size (a few large `stream.reset`s) as well as by count.
    private let pendingBytes = Atomic<Int>(0)
    static let byteLimit = 4 << 20
    /// Monotonic ns of the last item the writer took off the queue while more was waiting;
    /// `stalled(since:)` ends a stream whose writer has not moved for too long.
    private let lastProgress = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)

    /// WebSocket streams are written straight onto their channel from the event loop (no task
    /// or async writer per message); SSE streams read `stream`.
    let direct: DirectSink?

    init(
        id: Int, sessionId: SessionID, role: Role, participant: ParticipantID? = nil, link: SessionLink? = nil,
        operatorSignIn: Credentials.Facts? = nil, queueLimit: Int, metrics: ServerMetrics, socket: SocketWriter? = nil
    ) {
        self.operatorSignIn = operatorSignIn
        self.id = id
        self.sessionId = sessionId
        self.role = role
        self.participant = participant
        self.link = link
        self.metrics = metrics
        self.direct = socket.map { DirectSink(socket: $0, limit: queueLimit) }
        (stream, continuation) = AsyncStream.makeStream(of: StreamItem.self, bufferingPolicy: .bufferingOldest(queueLimit))
    }

    /// Why the stream ended, if the server ended it.
    var endReason: StreamEnd? { ending.withLock { $0.reason } }

    func send(_ item: StreamItem) {
        if pending.load(ordering: .relaxed) == 0 { lastProgress.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }
        switch continuation.yield(item) {
        case .enqueued:
            pending.add(1, ordering: .relaxed)
            metrics.queued.increment()
            if case .event(let event) = item,
                pendingBytes.add(event.sse.readableBytes, ordering: .relaxed).newValue > Self.byteLimit, end(.slowConsumer)
            {
                metrics.slowConsumers.increment()
            }
        case .terminated: break
        case .dropped:
            // The queue is full. Dropping this event silently would leave a gap, so end the
            // stream instead: the client reconnects with its last eventId and replays.
            if end(.slowConsumer) { metrics.slowConsumers.increment() }
        @unknown default: break
        }
    }

    /// Ends the stream; true if this call decided why.
    @discardableResult
    func end(_ reason: StreamEnd) -> Bool {
        let (first, action) = ending.withLock { ending -> (Bool, (@Sendable (StreamEnd) -> Void)?) in
            guard ending.reason == nil else { return (false, nil) }
            ending.reason = reason
            return (true, ending.action)
        }
        continuation.finish()
        if first, let action { action(reason) }
        return first
    }

    /// What to do when the server ends this stream (a WebSocket closes itself this way, so
    /// no task has to wait for it). Runs at once if the stream has already ended.
    func whenEnded(_ action: @escaping @Sendable (StreamEnd) -> Void) {
        let already = ending.withLock { ending -> StreamEnd? in
            if ending.reason == nil { ending.action = action }
            return ending.reason
        }
        if let already { action(already) }
    }

    /// An item taken off the queue by the writer (keeps the queue-depth gauge true).
    func consumed(_ item: StreamItem) {
        pending.subtract(1, ordering: .relaxed)
        if case .event(let event) = item { pendingBytes.subtract(event.sse.readableBytes, ordering: .relaxed) }
        lastProgress.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
        metrics.queued.decrement(by: 1)
    }

    /// Ends a queued (SSE) stream whose writer has had items waiting and not moved for
    /// `limit`: its client stopped reading and the socket is full. True if it was ended now.
    func endIfStalled(limit: Duration, now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Bool {
        guard direct == nil, pending.load(ordering: .relaxed) > 0 else { return false }
        let idle = now &- lastProgress.load(ordering: .relaxed)
        guard idle > UInt64(milliseconds(limit)) * 1_000_000 else { return false }
        return end(.slowConsumer)
    }

    /// On the channel's event loop: writes `events` (those after the stream's cursor) as text
    /// frames and flushes once. Returns how many were written. A client that leaves `limit`
    /// events unwritten in a row (its socket full) is ended as a slow consumer.
    func writeDirect(_ events: [EncodedEvent]) -> Int {
        guard let direct else { return 0 }
        let outcome = direct.write(events)
        if outcome.tooSlow, end(.slowConsumer) { metrics.slowConsumers.increment() }
        return outcome.written
    }

    /// What was still queued when the stream closed no longer counts as queued.
    fileprivate func discardPending() {
        let left = pending.exchange(0, ordering: .relaxed)
        if left > 0 { metrics.queued.decrement(by: Double(left)) }
    }
}

/// Fans durable events out to the open streams of their session, by role.
final class EventHub: Sendable {
    let epoch: String
    let metrics: ServerMetrics
    /// The first sequence published by this process: older events are only in the ring.
    private let startedAt: UInt64
    private let queueLimit: Int
    private let state: Mutex<State>

    private struct State {
        var sessions: [SessionID: [Int: Subscription]] = [:]
        /// Open streams per "session/participant".
        var perParticipant: [String: Int] = [:]
        var nextId = 0
        /// Highest sequence handed to subscribers; everything up to it is durable.
        var published: UInt64
        var count = 0
        /// Each session's most recent events, already encoded: replay for a client that
        /// was away briefly (the reconnect storm) is served from these shared buffers instead
        /// of decoding and re-encoding ring records per client.
        var recent: [SessionID: RecentEvents] = [:]
        var clock: UInt64 = 0
    }

    /// A session's last `capacity` encoded events (those with an audience), and from which
    /// sequence on the session's events are complete here.
    struct RecentEvents {
        var events: [EncodedEvent] = []
        var head = 0
        /// When this session last published (for evicting the quietest session's cache).
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

        /// Events with sequence in (after, through], oldest first, if all are held and none
        /// is older than `notBefore` (replay never serves what retention has expired).
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

    /// Encoded events kept per session for replay (≈ 0.5–1 KB each), for at most
    /// `recentSessions` sessions (the most recently active): ≤ ~100 MB in all.
    static let recentCapacity = 2048
    static let recentSessions = 64

    init(epoch: String, publishedThrough: UInt64, queueLimit: Int, metrics: ServerMetrics) {
        self.epoch = epoch
        self.metrics = metrics
        self.queueLimit = queueLimit
        self.startedAt = publishedThrough + 1
        self.state = Mutex(State(published: publishedThrough))
    }

    /// Registers a stream. Returns the sequence up to which events were already published:
    /// the caller replays (from, that] from the log; everything after arrives on the stream.
    /// One participant may hold this many streams at once (a phone has one; a few tabs are
    /// fine; a script opening hundreds on one identity is not).
    static let streamsPerParticipant = 4

    /// Registers a stream. Returns the sequence up to which events were already published:
    /// the caller replays (from, that] from the log; everything after arrives on the stream.
    /// Nil when `participant` already holds `streamsPerParticipant` streams.
    func subscribe(
        sessionId: SessionID, role: Role, participant: ParticipantID? = nil, link: SessionLink? = nil,
        operatorSignIn: Credentials.Facts? = nil, socket: SocketWriter? = nil
    ) -> (Subscription, publishedThrough: UInt64)? {
        state.withLock { state in
            if let participant {
                let key = sessionId + "/" + participant
                guard state.perParticipant[key, default: 0] < Self.streamsPerParticipant else { return nil }
                state.perParticipant[key, default: 0] += 1
            }
            state.nextId += 1
            let subscription = Subscription(
                id: state.nextId, sessionId: sessionId, role: role, participant: participant, link: link,
                operatorSignIn: operatorSignIn, queueLimit: queueLimit, metrics: metrics, socket: socket)
            state.sessions[sessionId, default: [:]][subscription.id] = subscription
            state.count += 1
            return (subscription, state.published)
        }
    }

    /// Ends every stream opened with an operator sign-in that `revoked` says has ended (logout,
    /// password change, `tally reset-password`). Returns how many.
    @discardableResult
    func endOperatorStreams(_ revoked: (Credentials.Facts) -> Bool) -> Int {
        let streams = state.withLock { $0.sessions.values.flatMap { $0.values.filter { $0.operatorSignIn.map(revoked) ?? false } } }
        return streams.reduce(0) { $0 + ($1.end(.revoked) ? 1 : 0) }
    }

    /// Ends every stream of a session opened with `link` (it was rotated). Returns how many.
    func revoke(sessionId: SessionID, link: SessionLink) -> Int {
        let streams = state.withLock { $0.sessions[sessionId]?.values.filter { $0.link == link } ?? [] }
        return streams.reduce(0) { $0 + ($1.end(.revoked) ? 1 : 0) }
    }

    /// The session's encoded events in (after, through] if they are all still in memory.
    func recentEvents(of sessionId: SessionID, after: UInt64, through: UInt64, retention: TimeInterval) -> [EncodedEvent]? {
        let notBefore = Date(timeIntervalSinceNow: -retention)
        return state.withLock { state in
            state.recent[sessionId]?.range(after: after, through: through, notBefore: notBefore)
        }
    }

    func unsubscribe(_ subscription: Subscription) {
        subscription.end(.client)
        subscription.discardPending()
        state.withLock { state in
            if state.sessions[subscription.sessionId]?.removeValue(forKey: subscription.id) != nil {
                state.count -= 1
                if let participant = subscription.participant {
                    let key = subscription.sessionId + "/" + participant
                    state.perParticipant[key, default: 1] -= 1
                    if state.perParticipant[key] == 0 { state.perParticipant[key] = nil }
                }
            }
            if state.sessions[subscription.sessionId]?.isEmpty == true {
                state.sessions[subscription.sessionId] = nil
            }
        }
    }

    var connectionCount: Int { state.withLock { $0.count } }

    /// Called by the event log, in order, once per durable batch.
    func publish(_ batch: [LoggedEvent]) {
        guard let last = batch.last else { return }
        metrics.eventsPublished.increment(by: Int64(batch.count))
        // Encode once per event, outside the lock; the buffers are shared by all receivers.
        // Ballots go to nobody: do not spend an encoding on them.
        let encoded = batch.compactMap { $0.event.audience.isEmpty ? nil : ($0.sessionId, encode($0)) }
        let startedAt = self.startedAt
        let targets: [(EncodedEvent, [Subscription])] = state.withLock { state in
            state.published = last.sequence
            state.clock += 1
            for (sessionId, event) in encoded {
                if state.recent[sessionId] == nil, state.recent.count >= Self.recentSessions,
                    let quietest = state.recent.min(by: { $0.value.touched < $1.value.touched })?.key
                {
                    state.recent[quietest] = nil  // its replays fall back to the ring
                }
                state.recent[sessionId, default: RecentEvents(completeFrom: startedAt)].append(event, capacity: Self.recentCapacity)
                state.recent[sessionId]!.touched = state.clock
            }
            return encoded.compactMap { sessionId, event in
                guard let subscribers = state.sessions[sessionId] else { return nil }
                return (event, subscribers.values.filter { event.audience.includes($0.role) })
            }
        }
        // WebSocket subscribers are grouped by event loop: one hop per loop per batch, every
        // event written to every connection there, then one flush per connection.
        var byLoop: [ObjectIdentifier: (any EventLoop, [Subscription: [EncodedEvent]])] = [:]
        for (event, subscribers) in targets {
            for subscriber in subscribers {
                guard let direct = subscriber.direct else {
                    subscriber.send(.event(event))
                    continue
                }
                let loop = direct.socket.channel.eventLoop
                byLoop[ObjectIdentifier(loop), default: (loop, [:])].1[subscriber, default: []].append(event)
            }
        }
        for (loop, work) in byLoop.values {
            let metrics = self.metrics
            loop.execute {
                let start = DispatchTime.now().uptimeNanoseconds
                var written = 0
                for (subscriber, events) in work {
                    written += subscriber.writeDirect(events)
                }
                let end = DispatchTime.now().uptimeNanoseconds
                metrics.deliveries.increment(by: written)
                metrics.fanoutBatch.recordNanoseconds(Int64(end &- start))
                if let first = work.first?.value.first {
                    metrics.deliveryLatency.recordNanoseconds(Int64(end &- first.publishedAt))
                }
            }
        }
    }

    /// SSE keep-alive, and the time bound on SSE streams: one whose writer has not moved for
    /// `stallLimit` with events waiting is ended (WebSocket streams are kept alive by protocol
    /// pings and bounded on their event loop instead).
    func heartbeat(stallLimit: Duration = .seconds(30)) {
        let all = state.withLock { $0.sessions.values.flatMap(\.values) }
        for subscriber in all where subscriber.direct == nil {
            if subscriber.endIfStalled(limit: stallLimit) {
                metrics.slowConsumers.increment()
                continue
            }
            subscriber.send(.heartbeat)
        }
    }

    /// Ends every stream (graceful shutdown).
    func endAll() {
        let all = state.withLock { $0.sessions.values.flatMap(\.values) }
        for subscriber in all { subscriber.end(.shutdown) }
    }

    // MARK: encoding (one encoder for live delivery, replay and resets)

    func eventId(_ sequence: UInt64) -> String {
        EventID(epoch: epoch, sequence: sequence).description
    }

    func encode(_ logged: LoggedEvent) -> EncodedEvent {
        encode(
            sequence: logged.sequence, type: logged.event.type, timestamp: logged.timestamp,
            sessionId: logged.sessionId, payload: logged.event.publicPayload, audience: logged.event.audience)
    }

    /// `stream.reset`: the client's position cannot be served; here is the whole state instead.
    func encodeReset(sessionId: SessionID, view: SessionView, through sequence: UInt64) -> EncodedEvent {
        encode(sequence: sequence, type: "stream.reset", timestamp: Date(), sessionId: sessionId, payload: view, audience: .everyone)
    }

    private func encode(
        sequence: UInt64, type: String, timestamp: Date, sessionId: SessionID, payload: any Encodable, audience: Audience
    ) -> EncodedEvent {
        let id = eventId(sequence)
        let envelope = Envelope(
            eventId: id, eventType: type, timestamp: Self.formatTimestamp(timestamp), sessionId: sessionId, payload: payload)
        // Encoding our own value types cannot fail; an empty object keeps the stream alive if it ever did.
        let json = (try? JSONEncoder.tally.encode(envelope)) ?? Data("{}".utf8)
        var sse = ByteBuffer()
        sse.reserveCapacity(json.count + id.utf8.count + type.utf8.count + 24)
        sse.writeString("id: \(id)\nevent: \(type)\ndata: ")
        sse.writeBytes(json)
        sse.writeString("\n\n")
        var frame = ByteBuffer()
        frame.reserveCapacity(json.count + 10)
        frame.writeInteger(UInt8(0x81))  // FIN + text
        if json.count < 126 {
            frame.writeInteger(UInt8(json.count))
        } else if json.count <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(json.count))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(json.count))
        }
        frame.writeBytes(json)
        return EncodedEvent(
            sequence: sequence, audience: audience, json: ByteBuffer(bytes: json), sse: sse, frame: frame,
            publishedAt: DispatchTime.now().uptimeNanoseconds, timestamp: timestamp)
    }

    static func formatTimestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Where a WebSocket's pre-built frames are written: the context of the connection's first
/// handler (`ConnectionGuardHandler`), so the bytes go straight to the socket without passing
/// the WebSocket encoder or the async channel handler. Only touched on the channel's loop.
struct SocketWriter: Sendable {
    let channel: any Channel
    let context: NIOLoopBound<ChannelHandlerContext>

    /// Finds the connection's first handler; call from anywhere, completes on the loop.
    static func make(for channel: any Channel) async throws -> SocketWriter {
        try await channel.eventLoop.submit {
            let context = try channel.pipeline.syncOperations.context(handlerType: ConnectionGuardHandler.self)
            return SocketWriter(channel: channel, context: NIOLoopBound(context, eventLoop: channel.eventLoop))
        }.get()
    }

    func write(_ frame: ByteBuffer) { context.value.write(NIOAny(frame), promise: nil) }
    func flush() { context.value.flush() }
}

/// The direct path for one WebSocket: frames written onto its connection by the hub, with
/// the replay handed over first. Everything here runs on the channel's event loop, so the
/// hub's batches and `goLive` are ordered by the loop itself: a batch that runs before
/// `goLive` is held and written after the backlog, so the replay and the live stream join
/// without a gap or a duplicate.
final class DirectSink: Sendable {
    let socket: SocketWriter
    private let limit: Int
    private struct State {
        var live = false
        var held: [EncodedEvent] = []
        /// Highest sequence written.
        var cursor: UInt64 = 0
        /// Consecutive events written while the channel was not writable.
        var unwritable = 0
        /// Cut off as a slow consumer: nothing more is written; it resumes by replay.
        var stopped = false
    }
    private let state = Mutex(State())

    init(socket: SocketWriter, limit: Int) {
        self.socket = socket
        self.limit = limit
    }

    /// Writes the backlog, then what was held meanwhile, and goes live.
    func goLive(backlog: [EncodedEvent], cursor: UInt64) -> Int {
        let held = state.withLock { state in
            state.cursor = cursor
            state.live = true
            defer { state.held = [] }
            return state.held
        }
        for event in backlog { socket.write(event.frame) }
        return backlog.count + write(held).written
    }

    /// Writes `events` (those after the cursor) and flushes once; before `goLive`, holds them.
    func write(_ events: [EncodedEvent]) -> (written: Int, tooSlow: Bool) {
        var written = 0
        var tooSlow = false
        let channel = socket.channel
        let live = state.withLock { state in
            guard state.live else {
                state.held += events
                return false
            }
            for event in events where event.sequence > state.cursor && !state.stopped {
                state.cursor = event.sequence
                socket.write(event.frame)
                written += 1
                if channel.isWritable {
                    state.unwritable = 0
                } else {
                    state.unwritable += 1
                    if state.unwritable > limit {
                        tooSlow = true
                        state.stopped = true
                    }
                }
            }
            return true
        }
        if live { socket.flush() }
        return (written, tooSlow)
    }
}
