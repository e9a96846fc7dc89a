import Logging
import NIOCore
import NIOWebSocket

/// A WebSocket on `/events`, after the upgrade: the last handler of its pipeline, and the only
/// thing that writes to the socket. Event frames (built once per event, shared), pings, pongs
/// and the close handshake all leave through `write`, on the channel's event loop — so their
/// order is the order they were written in, with no second path to race.
///
/// Inbound, NIO's `WebSocketFrameDecoder` (in front of this) parses and unmasks client frames.
/// The stream is receive-only: a client that sends a message is closed with 1008.
final class WebSocketStreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private let pingInterval: TimeAmount
    private let logger: Logger
    /// Consecutive event writes while the channel was not writable before giving up on it.
    private let unwritableLimit: Int
    private var context: ChannelHandlerContext?
    private var pinger: Scheduled<Void>?
    private var live = false
    /// Events delivered before the backlog was written, written right after it.
    private var held: [EncodedEvent] = []
    private var cursor = StreamCursor(0)
    private var unwritable = 0
    /// Cut off as a slow consumer: nothing more is written but the close; it resumes by replay.
    private var stopped = false
    /// A close frame has been sent: nothing more is written but the close itself.
    private var closing = false
    /// Set when the hub or the client ended the stream; the channel closes after the handshake.
    private var onClosed: (() -> Void)?
    /// Closes the connection if the client does not finish the close handshake in time.
    private var closeTimer: Scheduled<Void>?

    init(pingInterval: TimeAmount, unwritableLimit: Int, logger: Logger) {
        self.pingInterval = pingInterval
        self.unwritableLimit = unwritableLimit
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Thousands of phones that connected together are not pinged in the same millisecond.
        schedulePing(after: .nanoseconds(Int64.random(in: 0..<max(pingInterval.nanoseconds, 1))))
        // A peer that vanished (phone out of range) never acknowledges the pings: the kernel
        // drops the connection once sent data has gone unacknowledged this long (TCP_USER_TIMEOUT).
        let deadPeerMillis = Int32(clamping: pingInterval.nanoseconds / 1_000_000 * 2 + 10_000)
        let tcpUserTimeout = ChannelOptions.socket(SocketOptionLevel(NIOBSDSocket.OptionLevel.tcp.rawValue), 18)
        _ = context.channel.setOption(tcpUserTimeout, value: .init(deadPeerMillis))
    }

    private func schedulePing(after delay: TimeAmount) {
        guard let context else { return }
        pinger = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard !self.closing else { return }
            self.write(WireFormat.pingFrame, flush: true)
            self.schedulePing(after: self.pingInterval)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pinger?.cancel()
        pinger = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        closeTimer?.cancel()
        onClosed?()
        onClosed = nil
        context.fireChannelInactive()
    }

    private func write(_ bytes: ByteBuffer, flush: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(bytes), promise: nil)
        if flush { context.flush() }
    }

    // MARK: from the hub (on this loop)

    /// Writes the backlog, then what was delivered meanwhile, and goes live.
    func goLive(backlog: [EncodedEvent], cursor start: UInt64) -> Int {
        cursor = StreamCursor(start)
        live = true
        var written = 0
        for event in backlog where !closing {
            write(event.frame, flush: false)
            written += 1
        }
        let pending = held
        held = []
        written += deliver(pending).written
        context?.flush()
        return written
    }

    /// Writes the events past the cursor and flushes once; before `goLive`, holds them.
    func deliver(_ events: [EncodedEvent]) -> Delivery {
        guard live else {
            // The gate is still working out the replay; a stream that falls this far behind
            // before it has started is a slow consumer like any other.
            held += events
            return Delivery(tooSlow: held.count > unwritableLimit)
        }
        guard let context, !closing, !stopped else { return Delivery() }
        var delivery = Delivery()
        for event in events where cursor.advance(to: event.sequence) {
            write(event.frame, flush: false)
            delivery.written += 1
            if context.channel.isWritable {
                unwritable = 0
            } else {
                unwritable += 1
                if unwritable > unwritableLimit {
                    delivery.tooSlow = true
                    stopped = true
                    break
                }
            }
        }
        if delivery.written > 0 { context.flush() }
        return delivery
    }

    /// Sends a close frame and closes the connection once the client answers, or after
    /// `grace` (a slow client gets time to read up to the close; a gone one does not hold on).
    func close(code: UInt16, reason: String, grace: TimeAmount) {
        guard let context, !closing else { return }
        closing = true
        pinger?.cancel()
        write(WireFormat.closeFrame(code: code, reason: reason), flush: true)
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: grace) { [channel = context.channel] in
            channel.close(promise: nil)
        }
    }

    /// What to do once the connection has closed (unsubscribe).
    func whenClosed(_ action: @escaping () -> Void) {
        if let context, context.channel.isActive {
            onClosed = action
        } else {
            action()
        }
    }

    // MARK: from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            // A client that sends pings but does not read its pongs would have them pile up
            // in memory: while the socket is full, pings go unanswered (RFC 6455 allows it).
            guard !closing, frame.fin, context.channel.isWritable else { return }
            write(WireFormat.pongFrame(echoing: frame.unmaskedData), flush: true)
        case .pong:
            break
        case .connectionClose:
            // The client's half of the handshake (or its answer to ours): echo and hang up.
            guard !closing else {
                context.close(promise: nil)  // the answer to our close
                return
            }
            closing = true
            pinger?.cancel()
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? 1000
            // Hang up once the echo is out, or after a moment if the client does not read it.
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WireFormat.closeFrame(code: code, reason: ""))).whenComplete { _ in
                channel.close(promise: nil)
            }
            closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        default:
            logger.debug("closing a stream whose client sent a \(frame.opcode) message")
            close(code: 1008, reason: "this stream is receive-only: send nothing", grace: .seconds(5))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is stopping and asks every connection to wind down.
        if event is ChannelShouldQuiesceEvent {
            close(code: StreamEnd.shutdown.closeCode.code, reason: StreamEnd.shutdown.closeCode.reason, grace: .seconds(2))
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Protocol errors from the decoder (an oversized or malformed frame) close with the
        // code RFC 6455 names; anything else just closes.
        if let error = error as? NIOWebSocketError, !closing {
            let code: UInt16 =
                switch error {
                case .invalidFrameLength: 1009
                default: 1002
                }
            close(code: code, reason: "protocol error", grace: .seconds(1))
        } else {
            context.close(promise: nil)
        }
    }
}

/// The hub's view of one WebSocket: every call hops to (or asserts) the channel's event loop
/// before touching the handler, which `NIOLoopBound` enforces.
public final class WebSocketSink: EventSink {
    public let eventLoop: any EventLoop
    private let handler: NIOLoopBound<WebSocketStreamHandler>
    /// How long a slow client gets to read up to its close frame.
    private let slowGrace: TimeAmount

    init(handler: WebSocketStreamHandler, eventLoop: any EventLoop, slowGrace: TimeAmount = .seconds(10)) {
        self.eventLoop = eventLoop
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
        self.slowGrace = slowGrace
    }

    public func deliver(_ events: [EncodedEvent]) -> Delivery {
        handler.value.deliver(events)
    }

    /// WebSockets ping themselves on their loop; nothing to do on the keeper's tick.
    public func keepAlive(stallLimit: Duration) -> Delivery { Delivery() }

    public func close(_ reason: StreamEnd) {
        guard reason != .client else { return }
        let (code, text) = reason.closeCode
        let grace: TimeAmount = reason == .slowConsumer ? slowGrace : .seconds(2)
        eventLoop.execute { [handler] in handler.value.close(code: code, reason: text, grace: grace) }
    }

    /// Refuses the stream after the handshake (a browser cannot read a refused handshake's
    /// status, but it can read a close code): 4000 + the HTTP status, and the reason.
    func refuse(status: Int, reason: String) {
        eventLoop.execute { [handler] in handler.value.close(code: UInt16(4000 + status), reason: reason, grace: .seconds(2)) }
    }

    /// On the loop: writes the backlog and goes live. Returns how many events were written.
    func goLive(_ start: EventHub.Start) -> Int {
        handler.value.goLive(backlog: start.backlog, cursor: start.cursor)
    }

    func whenClosed(_ action: @escaping @Sendable () -> Void) {
        eventLoop.execute { [handler] in handler.value.whenClosed(action) }
    }
}
