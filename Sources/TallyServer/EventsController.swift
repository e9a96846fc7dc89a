import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import TallyDomain
import TallyEventLog

/// `GET /events`: WebSocket (on upgrade) and Server-Sent Events (otherwise) on one path.
///
/// Both transports share one start-up (authorize → subscribe → replay or reset) and one queue
/// per connection; they differ only in framing. Replay and live delivery use the same encoder
/// and the same role filter.
struct EventsController: Sendable {
    let venue: Venue
    let hub: EventHub
    let access: Access
    let limits: Limits
    let log: any EventLog
    let logger: Logger
    /// How long events stay replayable (a position older than this gets `stream.reset`).
    let retention: TimeInterval
    /// WebSocket ping period. Each connection's first ping comes after a random part of it, so
    /// thousands of phones that connected together are not pinged in the same millisecond.
    let pingInterval: Duration
    var metrics: ServerMetrics { hub.metrics }

    /// WebSocket close code for a client whose queue overflowed. It should reconnect with its
    /// last `eventId`; nothing is lost.
    static let slowConsumerCloseCode: UInt16 = 4008

    struct Viewer {
        let session: LiveSession
        let role: Role
        let participant: ParticipantID?
        /// The session link whose token opened this stream (nil for the operator, a participant
        /// or a join code), and its generation then: rotating that link ends the stream.
        var link: SessionLink? = nil
        var linkGeneration = 0
        /// The operator sign-in that opened it: revoking that sign-in ends the stream.
        var operatorSignIn: Credentials.Facts? = nil
    }

    /// Who is asking, and for which session. Throws a precise 4xx problem.
    func authorize(_ request: Request, ip: String) throws -> Viewer {
        let query = request.uri.queryParameters
        guard let sessionId = query["sessionId"].map(String.init), !sessionId.isEmpty else {
            throw Problem(.badRequest, "the sessionId query parameter is required")
        }
        guard IdentifierAlphabet.isWellFormed(sessionId), let session = venue.session(sessionId) else {
            throw Problem(.notFound, "no such session")
        }
        var requested: Role?
        if let actorType = query["actorType"].map(String.init) {
            guard let role = Role(rawValue: actorType) else {
                throw Problem(.badRequest, "actorType must be presenter, participant or display")
            }
            requested = role
        }
        let token = query["token"].map(String.init)
        // Cross-site WebSocket hijacking: a page elsewhere could open this socket with the
        // visitor's cookies (WebSocket has no CORS). Only our own pages may ride on cookies.
        if token == nil, let origin = request.headers[.origin], !SameOrigin.matches(origin: origin, request: request) {
            throw Problem(.forbidden, "cross-site stream refused: \(origin) is not this appliance")
        }
        // A display may also follow a session with only its join code (typed on the screen);
        // it then sees what participants see. The code is a guess like a typed join.
        if requested == .display, let token, let code = JoinCode(token) {
            try limits.checkGuesses(from: ip, in: venue)
            guard session.read({ state, _ in state.joinCode == code }) else {
                limits.failedGuess(from: ip, in: venue)
                throw Problem(.forbidden, "that is not this session's join code")
            }
            guard session.read({ state, _ in state.lifecycle == .active }) else {
                throw Problem(.gone, "this session has ended; ask for the new join code")
            }
            return Viewer(session: session, role: .display, participant: nil)
        }
        let grants = access.grants(of: request, queryToken: token)
        guard let (best, participant) = Access.viewer(grants, of: session.id) else {
            throw Access.denied(grants, "this stream is for the session's presenter, displays and participants")
        }
        let role: Role
        switch (requested, best) {
        case (nil, _): role = best
        case (.presenter, .presenter), (.participant, .participant), (.display, .display), (.display, .presenter):
            role = requested!
        default:
            throw Problem(.forbidden, "your credentials do not allow actorType=\(requested!.rawValue)")
        }
        if role == .participant, let actorId = query["actorId"].map(String.init), actorId != participant {
            throw Problem(.forbidden, "actorId does not match your participant token")
        }
        // Which link the stream rests on: the operator's own sign-in outlives any rotation.
        let link: SessionLink? =
            grants.contains(.operator) ? nil
            : grants.contains(.presenter(session.id)) ? .presenter
            : grants.contains(.display(session.id)) ? .display : nil
        return Viewer(
            session: session, role: role, participant: role == .participant ? participant : nil, link: link,
            linkGeneration: link.map { venue.linkGeneration(session.id, $0) } ?? 0,
            operatorSignIn: link == nil && grants.contains(.operator) ? access.operatorSignIn(of: request, queryToken: token) : nil)
    }

    /// An open stream: its queue, what to send first, and the last sequence already covered.
    struct Start {
        let subscription: Subscription
        let backlog: [EncodedEvent]
        let cursor: UInt64
    }

    /// Subscribe first, then replay what the log holds up to the subscription point, so there is
    /// no gap and (with `cursor`) no duplicate between replay and live delivery.
    func open(_ viewer: Viewer, from: String?, socket: SocketWriter? = nil) throws -> Start {
        let session = viewer.session
        guard let (subscription, published) = hub.subscribe(
            sessionId: session.id, role: viewer.role, participant: viewer.participant, link: viewer.link,
            operatorSignIn: viewer.operatorSignIn, socket: socket)
        else {
            throw Problem(
                .tooManyRequests, "this participant already has \(EventHub.streamsPerParticipant) open streams; close one first",
                headers: [.retryAfter: "5"])
        }
        // A rotation or sign-out between `authorize` and here found no subscription to end:
        // look again now that this one is registered.
        if let link = viewer.link, venue.linkGeneration(session.id, link) != viewer.linkGeneration {
            hub.unsubscribe(subscription)
            throw Problem(.unauthorized, "this link was replaced; ask the presenter for the new one")
        }
        if let signIn = viewer.operatorSignIn, !access.signIns.honours(signIn) {
            hub.unsubscribe(subscription)
            throw Problem(.unauthorized, "this sign-in has ended; sign in again")
        }
        let sessionLast = session.read { _, last in last }
        if let from, let position = EventID(from), position.epoch == hub.epoch, position.sequence <= sessionLast {
            // Replay (from, published]; everything later arrives live on the queue.
            // Recent events come already encoded from memory (shared by every reconnecting
            // client); older positions are read from the ring and encoded for this client.
            if let recent = hub.recentEvents(of: session.id, after: position.sequence, through: published, retention: retention) {
                metrics.replays.increment()
                let backlog = recent.filter { $0.audience.includes(viewer.role) }
                return Start(subscription: subscription, backlog: backlog, cursor: max(position.sequence, published))
            }
            if let replay = log.events(of: session.id, after: position.sequence, through: published) {
                metrics.replays.increment()
                let backlog = replay.filter { $0.event.audience.includes(viewer.role) }.map(hub.encode)
                return Start(subscription: subscription, backlog: backlog, cursor: max(position.sequence, published))
            }
        }
        guard from != nil else {
            // No position: live events only (clients take `lastEventId` from the snapshot).
            return Start(subscription: subscription, backlog: [], cursor: published)
        }
        // The position cannot be served (malformed, from another ring, overwritten, expired, or
        // ahead of the log): send the whole state instead, and continue live after it.
        let (view, last) = session.read { state, last in
            (state.view(for: viewer.role, participant: viewer.participant, lastEventId: hub.eventId(last)), last)
        }
        metrics.resets.increment()
        let reset = hub.encodeReset(sessionId: session.id, view: view, through: last)
        return Start(subscription: subscription, backlog: [reset], cursor: last)
    }

    // MARK: Server-Sent Events

    func addRoutes(to router: Router<TallyRequestContext>) {
        router.get("events", use: serverSentEvents)
    }

    func serverSentEvents(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let viewer = try authorize(request, ip: Limits.ip(context))
        if request.headers[.upgrade] != nil {
            // The WebSocket router declined this upgrade for a reason `authorize` did not catch.
            throw Problem(.badRequest, "WebSocket upgrade refused")
        }
        let from = request.uri.queryParameters["fromEventId"].map(String.init) ?? request.headers[HTTPField.Name("Last-Event-ID")!]
        let start = try open(viewer, from: from)
        // A writer blocked on a client that stopped reading cannot notice the stream ending:
        // closing the connection unblocks it. A revoked link is cut at once; a slow client gets
        // the time a WebSocket gets to read up to its close (then resumes with Last-Event-ID).
        let channel = context.channel
        let finished = Flag()
        // When the connection closes (the client hung up and a write or read noticed), the
        // stream ends at once, releasing its place under the per-participant cap.
        let subscription = start.subscription
        channel.closeFuture.whenComplete { _ in subscription.end(.client) }
        start.subscription.whenEnded { reason in
            switch reason {
            case .revoked: channel.close(promise: nil)
            case .slowConsumer:
                channel.eventLoop.scheduleTask(in: .seconds(10)) {
                    if !finished.isSet { channel.close(promise: nil) }
                }
            case .shutdown, .client: break
            }
        }
        let hub = self.hub
        let logger = context.logger
        logger.info("stream opened", metadata: ["transport": "sse", "role": "\(viewer.role.rawValue)", "session": "\(viewer.session.id)"])
        let metrics = self.metrics
        let body = ResponseBody { writer in
            let open = metrics.stream("sse", viewer.role)
            open.increment()
            defer {
                open.decrement()
                hub.unsubscribe(start.subscription)
            }
            var cursor = start.cursor
            var opening = ByteBuffer(string: "retry: 1000\n\n")
            for event in start.backlog { opening.writeImmutableBuffer(event.sse) }
            try await writer.write(opening)
            for await item in start.subscription.stream.cancelOnGracefulShutdown() {
                start.subscription.consumed(item)
                switch item {
                case .event(let event):
                    guard event.sequence > cursor else { continue }
                    cursor = event.sequence
                    try await writer.write(event.sse)
                    metrics.delivered(event)
                case .heartbeat:
                    try await writer.write(ByteBuffer(string: ":\n\n"))
                }
            }
            logger.info("stream closed", metadata: ["transport": "sse", "reason": "\(start.subscription.endReason.map { "\($0)" } ?? "client")"])
            try await writer.finish(nil)
            finished.set()
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/event-stream", .cacheControl: "no-store",
                HTTPField.Name("X-Accel-Buffering")!: "no",
            ],
            body: body)
    }

    // MARK: WebSocket

    func addWebSocketRoutes(to router: Router<TallyRequestContext>) {
        // Always accept the handshake: a browser cannot read the status of a refused one, but
        // it can read a close code. Refusals close at once with 4000 + the HTTP status
        // (4400, 4401, 4403, 4404) and the problem's detail as the reason.
        router.ws("events") { inbound, outbound, context in
            try await webSocket(
                inbound: inbound, outbound: outbound, request: context.request, channel: context.requestContext.channel,
                ip: Limits.ip(context.requestContext), logger: context.logger)
        }
    }

    private func webSocket(
        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, request: Request, channel: any Channel,
        ip: String, logger: Logger
    ) async throws {
        let viewer: Viewer
        let start: Start
        let socket: SocketWriter
        do {
            viewer = try authorize(request, ip: ip)
            let from = request.uri.queryParameters["fromEventId"].map(String.init)
            // Events are written onto the channel by the hub, from the event loop; this task only
            // hands over the replay, reads (for pings and the close handshake) and waits for the end.
            socket = try await SocketWriter.make(for: channel)
            start = try open(viewer, from: from, socket: socket)
        } catch let problem as Problem {
            try await outbound.close(
                .init(codeNumber: 4000 + problem.status.code), reason: String(problem.detail.utf8.prefix(120)) ?? "refused")
            return
        }
        let metrics = self.metrics
        let streams = metrics.stream("websocket", viewer.role)
        streams.increment()
        defer {
            streams.decrement()
            hub.unsubscribe(start.subscription)
        }
        logger.info("stream opened", metadata: ["transport": "websocket", "role": "\(viewer.role.rawValue)", "session": "\(viewer.session.id)"])
        let subscription = start.subscription
        channel.eventLoop.execute {
            let written = subscription.direct?.goLive(backlog: start.backlog, cursor: start.cursor) ?? 0
            socket.flush()
            metrics.deliveries.increment(by: written)
        }
        let period = TimeAmount.nanoseconds(milliseconds(pingInterval) * 1_000_000)
        let pinger = channel.eventLoop.scheduleRepeatedTask(
            initialDelay: .nanoseconds(Int64.random(in: 0..<max(period.nanoseconds, 1))), delay: period
        ) { _ in
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()), promise: nil)
        }
        defer { pinger.cancel() }
        // A peer that vanished (phone out of range) never acknowledges the pings: the kernel
        // drops the connection once sent data has gone unacknowledged this long.
        let deadPeerMillis = Int(milliseconds(pingInterval) * 2 + 10_000)
        try? await channel.setOption(ChannelOptions.socket(.init(IPPROTO_TCP), 18), value: .init(deadPeerMillis)).get()  // TCP_USER_TIMEOUT
        // When the server ends the stream (slow consumer, shutdown), a short-lived task sends
        // the close; while it runs normally this connection costs no task but this one.
        subscription.whenEnded { reason in
            guard reason != .client else { return }
            Task {
                switch reason {
                case .slowConsumer:
                    try? await outbound.close(
                        .init(codeNumber: Int(Self.slowConsumerCloseCode)), reason: "too slow: reconnect with fromEventId")
                    // The close frame sits behind what the client has not read yet. Give a
                    // client that is slow (not gone) time to read up to it; then cut it off.
                    try? await Task.sleep(for: .seconds(10))
                    channel.close(promise: nil)
                case .shutdown:
                    try? await outbound.close(.goingAway, reason: "server shutting down")
                case .revoked:
                    try? await outbound.close(.init(codeNumber: 4401), reason: "this link was replaced; ask the presenter for the new one")
                case .client:
                    break
                }
            }
        }
        // Keep reading: pings, pongs and the close handshake are only processed while someone
        // iterates `inbound`. The stream is receive-only: a client that sends a message is not
        // speaking this protocol and is closed with 1008.
        for try await frame in inbound {
            logger.debug("closing a stream whose client sent a \(frame.opcode) message")
            try await outbound.close(.policyViolation, reason: "this stream is receive-only: send nothing")
            break
        }
        logger.info("stream closed", metadata: ["transport": "websocket", "reason": "\(start.subscription.endReason.map { "\($0)" } ?? "client")"])
    }
}

/// A one-way flag shared between a handler and a callback.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
