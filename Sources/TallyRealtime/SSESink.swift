import Dispatch
import HummingbirdCore
import NIOCore
import Synchronization

/// A Server-Sent Events stream on `/events`: a bounded queue the hub fills on the connection's
/// loop, and one writer (`run`) that drains it into the response body. The writer is the only
/// thing that writes to the body, so the opening, the backlog, events and keep-alives leave in
/// the order they were queued.
///
/// Bounded by count and by bytes: a client that stops reading is ended as a slow consumer
/// (it resumes with `Last-Event-ID`), never allowed to hold memory without limit.
public final class SSESink: EventSink {
    public let eventLoop: any EventLoop
    private let metrics: RealtimeMetrics
    private let stream: AsyncStream<Item>
    private let continuation: AsyncStream<Item>.Continuation
    /// Items in this queue now (the gauge is the sum over all queues).
    private let pending = Atomic<Int>(0)
    private let pendingBytes = Atomic<Int>(0)
    /// Monotonic ns of the writer's last progress while items were waiting.
    private let lastProgress = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)
    private let ended = Mutex<(reason: StreamEnd?, action: (@Sendable (StreamEnd) -> Void)?)>((nil, nil))

    /// The most a stream may have queued: a few large `stream.reset`s count by size.
    public static let byteLimit = 4 << 20

    enum Item: Sendable {
        case event(EncodedEvent)
        case heartbeat
    }

    public init(eventLoop: any EventLoop, queueLimit: Int, metrics: RealtimeMetrics) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        (stream, continuation) = AsyncStream.makeStream(of: Item.self, bufferingPolicy: .bufferingOldest(queueLimit))
    }

    /// What to do when the server ends the stream: a writer blocked on a client that stopped
    /// reading cannot notice, so the connection itself is closed from here. Runs at once if
    /// the stream has already ended.
    public func whenEnded(_ action: @escaping @Sendable (StreamEnd) -> Void) {
        let already = ended.withLock { ended -> StreamEnd? in
            if ended.reason == nil { ended.action = action }
            return ended.reason
        }
        if let already { action(already) }
    }

    public func deliver(_ events: [EncodedEvent]) -> Delivery {
        var delivery = Delivery()
        for event in events {
            switch enqueue(.event(event), bytes: event.sse.readableBytes) {
            case .queued: delivery.written += 1
            case .full:
                // Dropping this event silently would leave a gap: end the stream instead.
                delivery.tooSlow = true
                return delivery
            case .ended: return delivery
            }
        }
        return delivery
    }

    public func keepAlive(stallLimit: Duration) -> Delivery {
        let now = DispatchTime.now().uptimeNanoseconds
        if pending.load(ordering: .relaxed) > 0 {
            let idle = Duration.nanoseconds(Int64(now &- lastProgress.load(ordering: .relaxed)))
            if idle > stallLimit { return Delivery(tooSlow: true) }
        }
        return Delivery(tooSlow: enqueue(.heartbeat, bytes: 0) == .full)
    }

    public func close(_ reason: StreamEnd) {
        let action = ended.withLock { ended -> (@Sendable (StreamEnd) -> Void)? in
            guard ended.reason == nil else { return nil }
            ended.reason = reason
            defer { ended.action = nil }
            return ended.action
        }
        // On the loop the hub delivers on: events it has already handed to this loop (the last
        // results at shutdown) are queued before the end, not dropped.
        eventLoop.execute { [continuation] in
            continuation.finish()
            action?(reason)
        }
    }

    private enum Enqueued { case queued, full, ended }

    private func enqueue(_ item: Item, bytes: Int) -> Enqueued {
        if pending.load(ordering: .relaxed) == 0 { lastProgress.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }
        switch continuation.yield(item) {
        case .enqueued:
            pending.add(1, ordering: .relaxed)
            metrics.queued.increment()
            if pendingBytes.add(bytes, ordering: .relaxed).newValue > Self.byteLimit { return .full }
            return .queued
        case .dropped: return .full
        case .terminated: return .ended
        @unknown default: return .ended
        }
    }

    /// The writer: the opening and the backlog, then the queue until the stream ends. Returns
    /// when the server ended the stream or the client went away (a write throws).
    public func run(writer: inout some ResponseBodyWriter, backlog: [EncodedEvent], cursor start: UInt64) async throws {
        defer {
            // Nothing more is queued once the writer has gone: what is left no longer counts.
            continuation.finish()
            let left = pending.exchange(0, ordering: .relaxed)
            if left > 0 { metrics.queued.decrement(by: Double(left)) }
        }
        var cursor = StreamCursor(start)
        var opening = WireFormat.sseOpening
        for event in backlog { opening.writeImmutableBuffer(event.sse) }
        try await writer.write(opening)
        for await item in stream {
            pending.subtract(1, ordering: .relaxed)
            lastProgress.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
            metrics.queued.decrement(by: 1)
            switch item {
            case .event(let event):
                pendingBytes.subtract(event.sse.readableBytes, ordering: .relaxed)
                guard cursor.advance(to: event.sequence) else { continue }
                try await writer.write(event.sse)
            case .heartbeat:
                try await writer.write(WireFormat.sseHeartbeat)
            }
        }
    }
}
