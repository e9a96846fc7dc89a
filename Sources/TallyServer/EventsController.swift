import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TallyDomain
import TallyEventLog
import TallyRealtime

/// `GET /events`: who may watch which session, and the SSE route.
///
/// The transports live in TallyRealtime (a WebSocket is taken over on upgrade by
/// `EventsChannel`; SSE is this route's response body). Both share one start-up here
/// (authorize → subscribe → replay or reset), one encoder and one role filter.
struct EventsController: Sendable {
    let venue: Venue
    let hub: EventHub
    let access: Access
    let limits: Limits
    let log: any EventLog
    /// How long events stay replayable (a position older than this gets `stream.reset`).
    let retention: TimeInterval
    /// Events an SSE stream may have queued before its client counts as too slow.
    let queueLimit: Int
    /// The names this box answers to (WebSocket upgrades naming another are not taken).
    let hosts: HostAllowlist
    /// Whose forwarded client addresses are believed (rate limits count against the client).
    let trustedProxies: TrustedProxies
    /// In a cluster: waits (briefly) until this instance has folded the events through a
    /// sequence another instance already delivered.
    var catchUp: (@Sendable (UInt64) async -> Void)? = nil

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
        /// A display that follows with the join code: the address it came from (such streams
        /// are capped per address, as a participant's are per participant).
        var joinCodeFrom: String? = nil
    }

    /// Displays one address may follow with a join code at once (a few big screens, not a script).
    static let joinCodeStreamsPerAddress = 16
    /// A replay longer than this is sent as one `stream.reset` instead: a client far behind
    /// gets the state, not hours of events held in memory for it.
    static let maxReplay = 2 * ReplayCache.defaultCapacity

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
        // visitor's cookies (WebSocket has no CORS). Only our own pages may ride on cookies, and
        // a token in the query (even a made-up one) does not lift the rule while cookies come too.
        let ridesOnCookies = request.headers[values: .cookie].contains { $0.contains("tally_") }
        if token == nil || ridesOnCookies, let origin = request.headers[.origin],
            !SameOrigin.matches(origin: origin, request: request)
        {
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
            return Viewer(session: session, role: .display, participant: nil, joinCodeFrom: ip)
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
            grants.contains(.operator)
            ? nil
            : grants.contains(.presenter(session.id))
                ? .presenter
                : grants.contains(.display(session.id)) ? .display : nil
        return Viewer(
            session: session, role: role, participant: role == .participant ? participant : nil, link: link,
            linkGeneration: link.map { venue.linkGeneration(session.id, $0) } ?? 0,
            operatorSignIn: link == nil && grants.contains(.operator) ? access.operatorSignIn(of: request, queryToken: token) : nil)
    }

    /// In a cluster: a stream starts from everything committed when it was asked for — a session
    /// created a moment ago on another instance, a poll made there just before (its
    /// `stream.reset` must not be older than what the client saw elsewhere).
    private func knowSession(_ request: Request) async {
        if let id = request.uri.queryParameters["sessionId"].map(String.init), IdentifierAlphabet.isWellFormed(id) {
            if venue.session(id) == nil {
                _ = await venue.findSession(id)
            } else {
                await venue.catchUp()
            }
        }
    }

    /// Subscribe first, then replay what the log holds up to the subscription point, so there is
    /// no gap and (with the cursor) no duplicate between replay and live delivery.
    func open(_ viewer: Viewer, from: String?, sink: any EventSink) async throws -> EventHub.Start {
        let session = viewer.session
        // A client back from another instance of a cluster may know events this one has not
        // folded yet (it lags by a notification): catch up first, so it resumes, not resets.
        if let from, let position = EventID(from), position.epoch == hub.wire.epoch, position.sequence > log.durableSequence {
            await catchUp?(position.sequence)
        }
        let credential: StreamCredential? =
            viewer.link.map { .link($0) } ?? viewer.operatorSignIn.map { .operatorSignIn($0) }
        let (subscription, published): (Subscription, UInt64)
        do {
            (subscription, published) = try hub.subscribe(
                sessionId: session.id, role: viewer.role, participant: viewer.participant,
                group: viewer.joinCodeFrom.map { (key: "join-code@" + $0, limit: Self.joinCodeStreamsPerAddress) },
                credential: credential, sink: sink)
        } catch .tooManyStreams(let limit) {
            throw Problem(
                .tooManyRequests,
                viewer.participant == nil
                    ? "your address already follows \(limit) streams with a join code; close one first"
                    : "this participant already has \(limit) open streams; close one first",
                headers: [.retryAfter: "5"])
        } catch .closing {
            throw Problem(.serviceUnavailable, "the appliance is shutting down; reconnect in a moment", headers: [.retryAfter: "5"])
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
        if let from, let position = EventID(from), position.epoch == hub.wire.epoch, position.sequence <= sessionLast,
            let backlog = await hub.replay(
                sessionId: session.id, role: viewer.role, participant: viewer.participant, after: position.sequence,
                through: published, log: log, retention: retention),
            backlog.count <= Self.maxReplay
        {
            // Replay (from, published]; everything later arrives live.
            return EventHub.Start(subscription: subscription, backlog: backlog, cursor: max(position.sequence, published))
        }
        guard from != nil else {
            // No position: live events only (clients take `lastEventId` from the snapshot).
            return EventHub.Start(subscription: subscription, backlog: [], cursor: published)
        }
        // The position cannot be served (malformed, from another log, overwritten, expired, or
        // ahead of the log): send the whole state instead, and continue live after it.
        let (state, last) = session.read { ($0, $1) }  // the view is built outside the writer's lock
        let view = state.view(for: viewer.role, participant: viewer.participant, lastEventId: hub.eventId(last))
        hub.metrics.resets.increment()
        let reset = hub.wire.encodeReset(sessionId: session.id, view: view, through: last)
        return EventHub.Start(subscription: subscription, backlog: [reset], cursor: last)
    }

    // MARK: Server-Sent Events

    func addRoutes(to router: Router<TallyRequestContext>) {
        router.get("events", use: serverSentEvents)
    }

    func serverSentEvents(_ request: Request, context: TallyRequestContext) async throws -> Response {
        await knowSession(request)
        let viewer = try authorize(request, ip: Limits.ip(context))
        if request.headers[.upgrade] != nil {
            // The WebSocket handshake was not taken (bad version or key): say so.
            throw Problem(.badRequest, "WebSocket upgrade refused")
        }
        let from = request.uri.queryParameters["fromEventId"].map(String.init) ?? request.headers[HTTPField.Name("Last-Event-ID")!]
        let sseHeaders: HTTPFields = [
            .contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        // HEAD (Hummingbird derives it from this GET route) checks access and subscribes nobody.
        if request.method == .head { return Response(status: .ok, headers: sseHeaders) }
        let channel = context.channel
        let sink = SSESink(eventLoop: channel.eventLoop, queueLimit: queueLimit, metrics: hub.metrics)
        let start = try await open(viewer, from: from, sink: sink)
        // A writer blocked on a client that stopped reading cannot notice the stream ending:
        // closing the connection unblocks it. A revoked link is cut at once; a slow client gets
        // the time a WebSocket gets to read up to its close (then resumes with Last-Event-ID).
        let finished = Flag()
        let subscription = start.subscription
        // When the connection closes, the stream ends at once, releasing its place under the
        // per-participant cap.
        let hub = self.hub
        // (Also when the client left before the body ever ran: the subscription goes either way.)
        channel.closeFuture.whenComplete { _ in hub.unsubscribe(subscription) }
        sink.whenEnded { reason in
            switch reason {
            case .revoked: channel.close(promise: nil)
            case .slowConsumer:
                channel.eventLoop.scheduleTask(in: .seconds(10)) {
                    if !finished.isSet { channel.close(promise: nil) }
                }
            case .shutdown, .client: break
            }
        }
        let logger = context.logger
        logger.info("stream opened", metadata: ["transport": "sse", "role": "\(viewer.role.rawValue)", "session": "\(viewer.session.id)"])
        let body = ResponseBody { writer in
            let open = hub.metrics.streams(.sse, viewer.role)
            open.increment()
            defer {
                open.decrement()
                hub.unsubscribe(subscription)
            }
            try await sink.run(writer: &writer, backlog: start.backlog, cursor: start.cursor)
            logger.info("stream closed", metadata: ["transport": "sse", "reason": "\(subscription.endReason?.rawValue ?? "client")"])
            try await writer.finish(nil)
            finished.set()
        }
        return Response(status: .ok, headers: sseHeaders, body: body)
    }
}

// MARK: WebSocket: the real-time module runs the socket; this decides who may watch

extension EventsController: StreamGate {
    /// DNS rebinding: a page on evil.example re-pointed at the box still says its own Host.
    func refusesUpgrade(_ request: HTTPRequest, channel: any Channel) -> StreamRefusal? {
        guard let authority = request.authority, !hosts.allows(authority) else { return nil }
        let problem = HostAllowlist.refusal(authority)
        return StreamRefusal(status: problem.status.code, reason: problem.detail)
    }

    /// Always accepts the handshake: a browser cannot read the status of a refused one, but it
    /// can read a close code. Refusals close at once with 4000 + the HTTP status (4400, 4401,
    /// 4403, 4404, 4429) and the problem's detail as the reason.
    func openStream(_ head: HTTPRequest, channel: any Channel, sink: any EventSink) async throws -> EventHub.Start {
        let request = Request(head: head, body: .init(buffer: ByteBuffer()))
        let client = ClientAddress(peer: channel.remoteAddress, headers: head.headerFields, trustedProxies: trustedProxies)
        do {
            await knowSession(request)
            let viewer = try authorize(request, ip: client.address)
            return try await open(viewer, from: request.uri.queryParameters["fromEventId"].map(String.init), sink: sink)
        } catch let problem as Problem {
            throw StreamRefusal(status: problem.status.code, reason: problem.detail)
        }
    }
}

/// What a stream was opened with, kept on its subscription: when that credential is withdrawn
/// (a link rotated, an operator signed out) the streams resting on it end.
enum StreamCredential: Sendable, Equatable {
    case link(SessionLink)
    case operatorSignIn(Credentials.Facts)
}

extension EventHub {
    /// Ends every stream opened with an operator sign-in that `revoked` says has ended (logout,
    /// password change, `tally reset-password`). Returns how many.
    @discardableResult
    func endOperatorStreams(_ revoked: (Credentials.Facts) -> Bool) -> Int {
        end(.revoked) {
            guard case .operatorSignIn(let facts) = $0.credential as? StreamCredential else { return false }
            return revoked(facts)
        }
    }

    /// Ends every stream of a session opened with `link` (it was rotated). Returns how many.
    func revoke(sessionId: SessionID, link: SessionLink) -> Int {
        end(.revoked, sessionId: sessionId) { ($0.credential as? StreamCredential) == .link(link) }
    }

    func eventId(_ sequence: UInt64) -> String { wire.eventId(sequence) }
}

/// A one-way flag shared between a handler and a callback.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
