import Crypto
import Foundation
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// Who may watch what: the server's side of `/events`. The real-time module handles the
/// transports; the gate holds the rules (credentials, roles, rate limits, the Host allowlist).
public protocol StreamGate: Sendable {
    /// Why this WebSocket upgrade is not even taken (a foreign `Host`: 421), or nil to take it.
    /// A refused upgrade is answered with that status as plain HTTP, and the connection closed.
    func refusesUpgrade(_ request: HTTPRequest, channel: any Channel) -> StreamRefusal?
    /// Authorizes the viewer, subscribes `sink` and works out its replay. Throws
    /// `StreamRefusal` with the HTTP status the refusal would have as a response.
    func openStream(_ request: HTTPRequest, channel: any Channel, sink: any EventSink) async throws -> EventHub.Start
}

/// A refused stream: the status and a short reason (a WebSocket sees 4000 + status).
public struct StreamRefusal: Error, Sendable {
    public let status: Int
    public let reason: String
    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }

    /// As an RFC 9457 problem, for a refusal answered over HTTP.
    var problemJSON: [UInt8] {
        struct Problem: Encodable {
            let type = "about:blank"
            let title: String
            let status: Int
            let detail: String
        }
        let problem = Problem(title: HTTPResponseStatus(statusCode: status).reasonPhrase, status: status, detail: reason)
        return Array((try? WireFormat.json.encode(problem)) ?? Data("{}".utf8))
    }
}

/// Every connection's HTTP/1.1 pipeline, with `/events` WebSockets taken over by this module
/// on upgrade. HTTP requests (SSE included) go to Hummingbird's responder as usual. An upgraded
/// WebSocket costs no task: it lives in its pipeline (`WebSocketStreamHandler`) until it closes.
public struct EventsChannel: ServerChildChannel, HTTPChannelHandler {
    public enum UpgradeResult: Sendable {
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade that was not taken. NIO has consumed its request head by then, so it
        /// cannot go on to the router: it is answered here.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, StreamRefusal)
    }

    public struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        public let channel: any Channel
    }

    public struct Configuration: Sendable {
        public var http1: HTTP1Channel.Configuration
        /// WebSocket ping period (the first ping comes after a random part of it).
        public var pingInterval: Duration
        /// Events written in a row onto a full socket before the client counts as too slow.
        public var unwritableLimit: Int
        /// How long a client cut off as too slow gets to read up to its close frame.
        public var slowConsumerGrace: Duration = .seconds(10)
        /// Clients send nothing on `/events`: inbound frames stay tiny.
        public var maxFrameSize = 4096
        public init(http1: HTTP1Channel.Configuration, pingInterval: Duration, unwritableLimit: Int) {
            self.http1 = http1
            self.pingInterval = pingInterval
            self.unwritableLimit = unwritableLimit
        }
    }

    public let responder: HTTPChannelHandler.Responder
    let configuration: Configuration
    let gate: any StreamGate
    let hub: EventHub
    /// The path whose upgrades are streams.
    static let path = "/events"

    public init(responder: @escaping HTTPChannelHandler.Responder, configuration: Configuration, gate: any StreamGate, hub: EventHub) {
        self.responder = responder
        self.configuration = configuration
        self.gate = gate
        self.hub = hub
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let refusal = NIOLoopBoundBox<StreamRefusal?>(nil, eventLoop: channel.eventLoop)
            let upgrader = StreamUpgrader(channel: self, refusal: refusal, logger: logger)
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: .init(
                    upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                            try channel.pipeline.syncOperations.addHandlers(configuration.http1.additionalChannelHandlers())
                            try channel.pipeline.syncOperations.addHandler(
                                HTTPConnectionStateHandler(idleTimeout: configuration.http1.idleTimeout.map { .init($0) }, logger: logger))
                            let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                            if let refused = refusal.value { return .refused(http, refused) }
                            return .notUpgraded(http)
                        }
                    }))
            pipeline.enablePipelining = false  // NIOAsyncChannel already reads requests in order
            pipeline.enableErrorHandling = false  // Hummingbird answers malformed requests
            pipeline.enableResponseHeaderValidation = false  // swift-http-types validated them
            pipeline.decoderConfiguration.maxHeaderFieldSize = configuration.http1.httpDecoder.maxHeaderFieldSize
            pipeline.decoderConfiguration.maxHeaderListSize = configuration.http1.httpDecoder.maxHeaderListSize
            pipeline.decoderConfiguration.maxHeaderFieldCount = configuration.http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            return Value(upgradeResult: negotiated, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http1):
                await handleHTTP(asyncChannel: http1, logger: logger)
            case .webSocket:
                // The stream lives in its pipeline; no task waits for it.
                break
            case .refused(let http, let refusal):
                try await http.executeThenClose { _, outbound in
                    let body = ByteBuffer(bytes: refusal.problemJSON)
                    let head = HTTPResponse(
                        status: .init(code: refusal.status),
                        headerFields: [
                            .contentType: "application/problem+json", .contentLength: "\(body.readableBytes)", .connection: "close",
                            .cacheControl: "no-store",
                        ])
                    try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
                }
            }
        } catch {
            logger.debug("connection ended before its first request", metadata: ["error": "\(error)"])
        }
    }

    /// After the 101: the frame decoder and the stream handler, then the gate decides (off the
    /// loop: replay may read the log), and the stream goes live or is refused with a close code.
    fileprivate func startStream(channel: any Channel, head: HTTPRequestHead, logger: Logger) throws {
        let handler = WebSocketStreamHandler(
            pingInterval: TimeAmount(configuration.pingInterval),
            unwritableLimit: configuration.unwritableLimit, logger: logger)
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: configuration.maxFrameSize)))
        try channel.pipeline.syncOperations.addHandler(handler)
        let sink = WebSocketSink(handler: handler, eventLoop: channel.eventLoop, slowGrace: TimeAmount(configuration.slowConsumerGrace))
        let request = try HTTPRequest(head, secure: false, splitCookie: false)
        let (gate, hub) = (self.gate, self.hub)
        Task {
            do {
                let start = try await gate.openStream(request, channel: channel, sink: sink)
                let role = start.subscription.role
                let open = hub.metrics.streams(.webSocket, role)
                open.increment()
                logger.info(
                    "stream opened",
                    metadata: ["transport": "websocket", "role": "\(role.rawValue)", "session": "\(start.subscription.sessionId)"])
                sink.whenClosed {
                    open.decrement()
                    hub.unsubscribe(start.subscription)
                    logger.info(
                        "stream closed",
                        metadata: ["transport": "websocket", "reason": "\(start.subscription.endReason?.rawValue ?? "client")"])
                }
                channel.eventLoop.execute {
                    let oldest = start.backlog.first?.publishedAt ?? DispatchTime.now().uptimeNanoseconds
                    hub.metrics.delivered(sink.goLive(start), oldestPublishedAt: oldest)
                }
            } catch let refusal as StreamRefusal {
                sink.refuse(status: refusal.status, reason: refusal.reason)
            } catch {
                logger.error("stream could not start", metadata: ["error": "\(error)"])
                sink.refuse(status: 500, reason: "the stream could not start")
            }
        }
    }
}

/// The WebSocket handshake (RFC 6455 §4.2) for `/events`: version 13, a key, and the gate's
/// consent; anything else is left to HTTP.
private struct StreamUpgrader: NIOTypedHTTPServerProtocolUpgrader {
    typealias UpgradeResult = EventsChannel.UpgradeResult
    let channel: EventsChannel
    /// Why the upgrade was not taken, for the HTTP answer (set on the channel's loop).
    let refusal: NIOLoopBoundBox<StreamRefusal?>
    let logger: Logger

    var supportedProtocol: String { "websocket" }
    // Checked in `buildUpgradeResponse`: NIO would also want them named in `Connection`.
    var requiredUpgradeHeaders: [String] { [] }

    /// The GUID RFC 6455 appends to the client's key.
    static let magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    struct NotAStream: Error {}

    func buildUpgradeResponse(channel: any Channel, upgradeRequest head: HTTPRequestHead, initialResponseHeaders: HTTPHeaders)
        -> EventLoopFuture<HTTPHeaders>
    {
        let keys = head.headers["sec-websocket-key"]
        guard head.uri.split(separator: "?", maxSplits: 1).first == Substring(EventsChannel.path),
            keys.count == 1, let key = keys.first, head.headers["sec-websocket-version"] == ["13"],
            let request = try? HTTPRequest(head, secure: false, splitCookie: false)
        else {
            refusal.value = StreamRefusal(
                status: 400, reason: "WebSocket upgrade refused: only /events upgrades, with one Sec-WebSocket-Key and version 13")
            return channel.eventLoop.makeFailedFuture(NotAStream())
        }
        if let refused = self.channel.gate.refusesUpgrade(request, channel: channel) {
            refusal.value = refused
            return channel.eventLoop.makeFailedFuture(NotAStream())
        }
        var headers = initialResponseHeaders
        let digest = Insecure.SHA1.hash(data: Array((key + Self.magic).utf8))
        headers.add(name: "Sec-WebSocket-Accept", value: Data(digest).base64EncodedString())
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(channel: any Channel, upgradeRequest head: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        channel.eventLoop.makeCompletedFuture {
            try self.channel.startStream(channel: channel, head: head, logger: logger)
            return .webSocket
        }
    }
}
