import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// Limits on connections, enforced before any HTTP parsing: how many may be open (in all and
/// per client address) and how long a client may take to send its first request head.
public struct ConnectionLimits: Sendable {
    /// Open connections in all (HTTP, SSE and WebSocket together).
    public var maxConnections = 20_000
    /// Open connections from one address. A hall of 2,000 phones behind one NAT'd access point
    /// shares one address and each phone may hold a stream plus a request or two, so the
    /// default leaves room for that while stopping one laptop from taking the whole box.
    public var maxConnectionsPerAddress = 8_000
    /// Time to deliver a complete request head on a new connection (slowloris).
    public var headerTimeout: Duration = .seconds(10)
    /// Time a keep-alive connection may sit between requests. It also bounds a later request
    /// head, since the connection counts as idle until that head is parsed.
    public var idleTimeout: Duration = .seconds(60)
    /// Largest request head (request line and headers). Ours are small: a token or a few
    /// cookies. Larger heads get 431 on a new connection; later ones on a keep-alive
    /// connection are cut off by the HTTP decoder with the same limit.
    public var maxHeadBytes = 16 * 1024
    /// Kernel send buffer per connection (SO_SNDBUF; Linux doubles it for bookkeeping).
    public static let sendBufferBytes = 128 * 1024
    public init() {}
}

/// Counts open connections per address; shared by every connection's `ConnectionGuardHandler`.
final class ConnectionCounter: Sendable {
    private struct State {
        var total = 0
        var byAddress: [String: Int] = [:]
    }
    private let state = Mutex(State())
    let limits: ConnectionLimits
    /// Trusted proxies carry many clients on one address, and the clients behind them cannot be
    /// told apart before HTTP is read: they count only against the cap in all (the proxy caps
    /// per client). Otherwise `flat` mode's 32 per address would be the whole hall's.
    let trustedProxies: TrustedProxies

    init(limits: ConnectionLimits, trustedProxies: TrustedProxies = TrustedProxies()) {
        self.limits = limits
        self.trustedProxies = trustedProxies
    }

    enum Admission { case admitted, tooManyInAll, tooManyFromAddress }

    func admit(_ address: String) -> Admission {
        let proxy = trustedProxies.contains(address)
        return state.withLock { state in
            if state.total >= limits.maxConnections { return .tooManyInAll }
            let mine = state.byAddress[address, default: 0]
            if mine >= limits.maxConnectionsPerAddress, !proxy { return .tooManyFromAddress }
            state.total += 1
            state.byAddress[address] = mine + 1
            return .admitted
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }

    var open: Int { state.withLock { $0.total } }
}

/// The first handler of every connection after TLS decryption (if any), ahead of the HTTP
/// decoder: it admits or refuses the connection (503 + Retry-After, written by hand since no
/// HTTP machinery exists yet) and closes it (408) if the first request head has not arrived in
/// time — behind TLS the deadline also covers the handshake. Once the head's blank line has
/// passed it only forwards bytes.
final class ConnectionGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let counter: ConnectionCounter
    private let metrics: ServerMetrics
    private let logger: Logger
    private var address: String?
    /// Admission is decided once per connection, whichever of handlerAdded/channelActive comes first.
    private var decided = false
    /// Answered and closing: nothing more is read or forwarded.
    private var refused = false
    private var deadline: Scheduled<Void>?
    /// Progress through "\r\n\r\n" (the end of the first request head), carried across reads.
    private static let endOfHead: [UInt8] = Array("\r\n\r\n".utf8)
    private var matched = 0
    private var headBytes = 0
    private var headComplete = false
    /// Behind TLS, writes wait for the handshake: a refusal must not wait for a client that
    /// never completes it.
    private let behindTLS: Bool
    /// Decrypted bytes have arrived (behind TLS: the handshake is done, an HTTP client is there).
    private var heard = false

    init(counter: ConnectionCounter, metrics: ServerMetrics, logger: Logger, behindTLS: Bool = false) {
        self.counter = counter
        self.metrics = metrics
        self.logger = logger
        self.behindTLS = behindTLS
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard !decided else { return }
        decided = true
        let ip = context.channel.remoteAddress?.ipAddress ?? "unknown"
        switch counter.admit(ip) {
        case .admitted:
            address = ip
            metrics.connectionOpened()
            let timeout = counter.limits.headerTimeout
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                [self] in
                guard !self.headComplete else { return }
                self.metrics.headerTimeouts.increment()
                self.logger.debug("closing a connection that did not send its request head in time")
                self.refuse(context, status: "408 Request Timeout", retryAfter: nil, detail: "the request head did not arrive in time")
            }
        case .tooManyInAll:
            metrics.refusedConnections.increment()
            refuse(context, status: "503 Service Unavailable", retryAfter: 5, detail: "the appliance is at its connection limit")
        case .tooManyFromAddress:
            metrics.refusedConnections.increment()
            refuse(context, status: "503 Service Unavailable", retryAfter: 5, detail: "too many connections from your address")
        }
    }

    private func refuse(_ context: ChannelHandlerContext, status: String, retryAfter: Int?, detail: String) {
        refused = true
        if behindTLS {
            // Nothing decrypted yet: no HTTP client to answer (a stalled or non-TLS handshake).
            guard heard || status.hasPrefix("503") else {
                context.close(promise: nil)
                return
            }
            // The answer is sent once the handshake completes; a client that never completes it
            // is cut off all the same.
            let timeout = counter.limits.headerTimeout
            context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                context.close(promise: nil)
            }
        }
        let body = #"{"type":"about:blank","title":"\#(status.dropFirst(4))","status":\#(status.prefix(3)),"detail":"\#(detail)"}"#
        var head =
            "HTTP/1.1 \(status)\r\nContent-Type: application/problem+json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        if let retryAfter { head += "Retry-After: \(retryAfter)\r\n" }
        let buffer = context.channel.allocator.buffer(string: head + "\r\n" + body)
        context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard address != nil, !refused else { return }  // refused: drop whatever it sends
        heard = true
        if !headComplete {
            let bytes = unwrapInboundIn(data)
            let pattern = Self.endOfHead
            for byte in bytes.readableBytesView {
                headBytes += 1
                if headBytes > counter.limits.maxHeadBytes {
                    deadline?.cancel()
                    metrics.oversizedHeads.increment()
                    refuse(
                        context, status: "431 Request Header Fields Too Large", retryAfter: nil,
                        detail: "the request head is larger than \(counter.limits.maxHeadBytes / 1024) KiB")
                    return
                }
                if byte == pattern[matched] {
                    matched += 1
                } else {
                    matched = byte == 13 ? 1 : 0
                }
                if matched == 4 {
                    headComplete = true
                    deadline?.cancel()
                    deadline = nil
                    break
                }
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if let address {
            counter.release(address)
            metrics.connectionClosed()
            self.address = nil
        }
        context.fireChannelInactive()
    }
}

/// Wraps the HTTP/WebSocket child channel so that every connection starts with a
/// `ConnectionGuardHandler`. With TLS, wrap this in `TLSChannel`: the TLS handler is then
/// first and the guard second, so the guard reads decrypted bytes, and its writes (its
/// refusals, and every WebSocket event the hub writes through its context) are encrypted.
struct GuardedChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let counter: ConnectionCounter
    let metrics: ServerMetrics
    var behindTLS = false

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let guardHandler = ConnectionGuardHandler(counter: counter, metrics: metrics, logger: logger, behindTLS: behindTLS)
        return channel.eventLoop.makeCompletedFuture {
            // Events are small writes pushed as they happen: without TCP_NODELAY, Nagle holds
            // each one back until the previous is acknowledged (tens of milliseconds).
            try channel.syncOptions?.setOption(.socketOption(.tcp_nodelay), value: 1)
            // A fixed kernel send buffer: with autotuning a client that stops reading can park
            // ~4 MB of kernel memory per connection before the server notices; this bounds it
            // and lets the slow-consumer limit act after ~256 KiB.
            try channel.syncOptions?.setOption(.socketOption(.so_sndbuf), value: ConnectionLimits.sendBufferBytes)
            // Last so far: first of all without TLS, right after the TLS handler with it.
            try channel.pipeline.syncOperations.addHandler(guardHandler, position: .last)
        }.flatMap {
            inner.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Raises the soft open-files limit to the hard limit (systemd's `LimitNOFILE=` sets both), so
/// the connection cap, not the default 1,024 descriptors, decides how many phones fit.
func raiseOpenFileLimit(toAtLeast wanted: Int, logger: Logger) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    if Int(clamping: limit.rlim_cur) < wanted {
        logger.warning(
            "the open-files limit is below the connection cap: raise LimitNOFILE (or ulimit -n)",
            metadata: ["limit": "\(limit.rlim_cur)", "max_connections": "\(wanted - ConsoleWarnings.descriptorReserve)"])
    } else {
        logger.info("open-files limit", metadata: ["limit": "\(limit.rlim_cur)"])
    }
}
