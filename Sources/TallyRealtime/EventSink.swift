import NIOCore

/// Where one stream's events go: one implementation per transport (`WebSocketSink`,
/// `SSESink`). The hub calls `deliver` on the sink's own event loop, in sequence order, one
/// hop per loop per durable batch; everything else may come from any thread.
public protocol EventSink: AnyObject, Sendable {
    /// The loop of the sink's connection.
    var eventLoop: any EventLoop { get }
    /// On `eventLoop`: hands `events` to the connection, skipping what its cursor has passed
    /// (replay and live delivery may overlap by design; the cursor makes the seam exact).
    func deliver(_ events: [EncodedEvent]) -> Delivery
    /// Keep-alive tick from the stream keeper (any thread). A sink that has had events waiting
    /// without progress for too long says so: its client stopped reading.
    func keepAlive(stallLimit: Duration) -> Delivery
    /// The server ends the stream (once, any thread): a close frame, or the end of the SSE body.
    func close(_ reason: StreamEnd)
}

/// What a sink did with what it was given.
public struct Delivery: Sendable {
    /// Events handed to the connection.
    public var written = 0
    /// The client is not keeping up: end the stream as a slow consumer (it resumes by replay).
    public var tooSlow = false
    public init(written: Int = 0, tooSlow: Bool = false) {
        self.written = written
        self.tooSlow = tooSlow
    }
}

/// Why a stream ended from the server's side.
public enum StreamEnd: String, Sendable {
    /// The client could not keep up. It resumes with `fromEventId` / `Last-Event-ID`.
    case slowConsumer
    /// The server is shutting down.
    case shutdown
    /// The client went away (or its connection closed).
    case client
    /// The credential the stream was opened with was withdrawn (a rotated link, a sign-out).
    case revoked

    /// The WebSocket close code and reason a client sees.
    var closeCode: (code: UInt16, reason: String) {
        switch self {
        case .slowConsumer: (4008, "too slow: reconnect with fromEventId")
        case .shutdown: (1001, "server shutting down")
        case .revoked: (4401, "this link was replaced; ask the presenter for the new one")
        case .client: (1000, "")
        }
    }
}

/// The highest sequence a stream has been given. Replay and live delivery share it, so the
/// seam between them has neither a gap nor a duplicate.
public struct StreamCursor: Sendable {
    public private(set) var last: UInt64
    public init(_ last: UInt64) { self.last = last }

    /// True (and moves past it) if `sequence` has not been given yet.
    public mutating func advance(to sequence: UInt64) -> Bool {
        guard sequence > last else { return false }
        last = sequence
        return true
    }
}
