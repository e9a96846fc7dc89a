import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TallyDomain
import TallyEventLog
import TallyRealtime

/// The REST API under `/api/v1`: commands in, acknowledgements out. Each command goes through
/// `LiveSession.execute` (decide → log → apply) and is acknowledged only once durable.
struct APIController: Sendable {
    let venue: Venue
    let hub: EventHub
    let metrics: ServerMetrics
    let access: Access
    let password: OperatorPassword
    let log: any EventLog
    let publicURL: PublicURL
    let projection: SQLiteProjection
    let limits: Limits
    /// First-run set-up code (nil when a password was already set at start).
    let setupCode: SetupCode?

    func addRoutes(to router: Router<TallyRequestContext>) {
        let api = router.group("api/v1")
        api.post("auth/login", use: login)
        api.post("auth/setup", use: setup)
        api.get("auth/status", use: authStatus)
        api.get("auth/setup-code", use: showSetupCode)
        api.post("auth/logout", use: logout)
        api.post("auth/password", use: changePassword)
        api.post("sessions", use: createSession)
        api.get("sessions", use: listSessions)
        api.get("sessions/:sessionId", use: getSession)
        api.post("sessions/:sessionId/end", use: endSession)
        api.post("sessions/:sessionId/joining", use: setJoining)
        api.post("sessions/:sessionId/links/rotate", use: rotateLink)
        api.post("sessions/:sessionId/polls", use: createPoll)
        api.post("sessions/:sessionId/polls/:pollId/open") { try await pollCommand($0, $1, SessionCommand.openPoll) }
        api.post("sessions/:sessionId/polls/:pollId/close") { try await pollCommand($0, $1, SessionCommand.closePoll) }
        api.post("sessions/:sessionId/polls/:pollId/reveal") { try await pollCommand($0, $1, SessionCommand.revealPoll) }
        api.post("sessions/:sessionId/polls/:pollId/votes", use: vote)
        api.post("join", use: join)
        api.get("sessions/:sessionId/export.csv") { request, context in try export(request, context, csv: true) }
        api.get("sessions/:sessionId/export.json") { request, context in try export(request, context, csv: false) }
    }

    // MARK: operator

    struct PasswordBody: Decodable { let password: String }
    struct TokenResponse: Encodable { let token: String; let expiresIn: Int }

    func login(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let body = try await decode(PasswordBody.self, request, context)
        guard password.isSet else {
            throw Problem(.conflict, "no operator password is set yet: choose one with POST /api/v1/auth/setup")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many failed sign-ins from your address") }
        // Read before the password is checked: a change landing meanwhile makes this token stale.
        let epoch = access.signIns.epoch
        guard body.password.utf8.count <= 256, try await password.matches(body.password) else {
            limits.signIns.failed(ip)
            context.logger.notice("operator sign-in refused", metadata: ["client": "\(ip)"])
            throw Problem(.unauthorized, "wrong password")
        }
        limits.signIns.succeeded(ip)
        return signedIn(context, epoch: epoch)
    }

    struct SetupBody: Decodable { let password: String; let setupCode: String? }

    func setup(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // First-run set-up only from the local network: never from a routed, public address,
        // and never relayed by a proxy (decided by the real peer, not a forwarded address).
        guard context.client.isOnTheLocalNetwork else {
            throw Problem(.forbidden, "the operator password can only be set from the local network")
        }
        let body = try await decode(SetupBody.self, request, context)
        // Cheap checks first: nothing is hashed for a request that cannot succeed.
        guard !password.isSet, let setupCode else {
            throw Problem(.conflict, "the operator password is already set; sign in with POST /api/v1/auth/login")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many wrong set-up codes from your address") }
        guard let typed = body.setupCode, setupCode.matches(typed) else {
            limits.signIns.failed(ip)
            context.logger.notice("first-run set-up refused: wrong set-up code", metadata: ["client": "\(ip)"])
            throw Problem(
                .forbidden,
                body.setupCode == nil
                    ? "the set-up code is required: it is shown on the appliance's own screen and in its log (journalctl -u tally)"
                    : "wrong set-up code: it is shown on the appliance's own screen and in its log (journalctl -u tally)")
        }
        guard body.password.count >= 8, body.password.utf8.count <= 256 else {
            throw Problem(.badRequest, "the operator password must have 8 to 256 characters")
        }
        let epoch = access.signIns.epoch
        guard try await password.setInitial(body.password) else {
            throw Problem(.conflict, "the operator password is already set; sign in with POST /api/v1/auth/login")
        }
        limits.signIns.succeeded(ip)
        context.logger.notice("operator password set on first run")
        return signedIn(context, epoch: epoch)
    }

    struct AuthStatus: Encodable { let operatorPasswordSet: Bool; let signedInAsOperator: Bool }

    /// What the presenter page needs to choose between sign-in and set-up; nothing more (the
    /// set-up code itself is never revealed here).
    func authStatus(_ request: Request, context: TallyRequestContext) async throws -> Response {
        json(AuthStatus(operatorPasswordSet: password.isSet, signedInAsOperator: access.grants(of: request).contains(.operator)))
    }

    struct SetupCodeResponse: Encodable { let setupCode: String }

    /// The set-up code, for the box's own screen only: the request must come from the box
    /// itself by its real address (a forwarded request never counts as local).
    func showSetupCode(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard context.client.isOnTheAppliance else {
            throw Problem(.forbidden, "the set-up code is shown only on the appliance's own screen")
        }
        guard !password.isSet, let setupCode else { throw Problem(.notFound, "set-up is done: the operator password is set") }
        return json(SetupCodeResponse(setupCode: setupCode.value))
    }

    private func signedIn(_ context: TallyRequestContext, epoch: Int64) -> Response {
        let lifetime = Int(access.credentials.operatorTokenLifetime)
        let token = access.credentials.token(for: .operator, epoch: epoch)
        var response = json(TokenResponse(token: token, expiresIn: lifetime))
        response.headers.append(access.cookie(for: .operator, token: token, maxAge: lifetime))
        return response
    }

    /// Ends this operator sign-in: its token (bearer or cookie) stops working everywhere.
    func logout(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var revoked = 0
        for token in access.tokens(of: request) {
            // Only a sign-in that still works can be ended (a second logout is a 401).
            guard access.grant(token) == .operator, let (_, facts) = access.credentials.inspect(token), !facts.nonce.isEmpty,
                let expiry = Credentials.operatorExpiry(token)
            else { continue }
            try access.signIns.revoke(nonce: facts.nonce, expiry: expiry)
            revoked += 1
        }
        // Streams opened with the token end too.
        hub.endOperatorStreams { !access.signIns.honours($0) }
        guard revoked > 0 else { throw Access.denied(access.grants(of: request), "only an operator sign-in can be signed out") }
        context.logger.notice("operator signed out")
        var response = Response(status: .noContent)
        response.headers.append(access.expiredCookie(for: .operator))
        return response
    }

    struct ChangePasswordBody: Decodable { let currentPassword: String; let newPassword: String }

    /// A new operator password; every earlier operator sign-in (on any device) ends.
    func changePassword(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try access.requireOperator(request)
        let body = try await decode(ChangePasswordBody.self, request, context)
        guard !password.isConfigured else {
            throw Problem(.conflict, "the operator password comes from the configuration (operator-password); change it there")
        }
        guard body.newPassword.count >= 8, body.newPassword.utf8.count <= 256 else {
            throw Problem(.badRequest, "the new operator password must have 8 to 256 characters")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many failed sign-ins from your address") }
        guard body.currentPassword.utf8.count <= 256, try await password.matches(body.currentPassword) else {
            limits.signIns.failed(ip)
            throw Problem(.forbidden, "the current password is wrong")
        }
        try await password.change(to: body.newPassword)
        try access.signIns.revokeAll()
        let ended = hub.endOperatorStreams { !access.signIns.honours($0) }
        context.logger.notice("operator password changed; earlier operator sign-ins revoked", metadata: ["streams_closed": "\(ended)"])
        return signedIn(context, epoch: access.signIns.epoch)
    }

    // MARK: sessions

    struct CreateSessionBody: Decodable { let title: String }
    struct SessionCreatedResponse: Encodable {
        let sessionId: String
        let joinCode: String
        let presenterToken: String
        let displayToken: String
        let eventId: String
    }

    func createSession(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try access.requireOperator(request)
        let body = try await decode(CreateSessionBody.self, request, context)
        let (session, created) = try venue.createSession(title: body.title)
        try await durable(created.last.sequence)
        let joinCode = session.read { state, _ in state.joinCode.value }
        let presenterToken = access.token(for: .presenter(session.id))
        context.logger.info("session created", metadata: ["session": "\(session.id)"])
        var response = json(
            SessionCreatedResponse(
                sessionId: session.id, joinCode: joinCode, presenterToken: presenterToken,
                displayToken: access.token(for: .display(session.id)), eventId: hub.eventId(created.last.sequence)),
            status: .created)
        response.headers[.location] = "/api/v1/sessions/\(session.id)"
        response.headers.append(access.cookie(for: .presenter(session.id), token: presenterToken, maxAge: 7 * 24 * 3600))
        return response
    }

    struct SessionSummary: Encodable {
        let sessionId: String
        let title: String
        let joinCode: String
        let state: SessionState.Lifecycle
        let participantCount: Int
        let pollCount: Int
        let openPollId: String?
    }

    func listSessions(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try access.requireOperator(request)
        let sessions = venue.allSessions().map { session in
            session.read { state, _ in
                SessionSummary(
                    sessionId: state.id, title: state.title, joinCode: state.joinCode.value, state: state.lifecycle,
                    participantCount: state.participantCount, pollCount: state.polls.count, openPollId: state.openPollId)
            }
        }
        return json(["sessions": sessions])
    }

    /// A snapshot for the caller's role, plus the display token for presenters (so the
    /// presenter view can link a screen).
    struct Snapshot: Encodable {
        let view: SessionView
        let displayToken: String?
        let joinUrl: String
        enum Key: String, CodingKey { case displayToken, joinUrl }
        func encode(to encoder: any Encoder) throws {
            try view.encode(to: encoder)
            var c = encoder.container(keyedBy: Key.self)
            try c.encodeIfPresent(displayToken, forKey: .displayToken)
            try c.encode(joinUrl, forKey: .joinUrl)
        }
    }

    func getSession(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        let grants = access.grants(of: request)
        guard let (role, participant) = Access.viewer(grants, of: session.id) else {
            throw Access.denied(grants, "this session is visible to its presenter, displays and participants")
        }
        let view = session.read { state, last in
            state.view(for: role, participant: participant, lastEventId: hub.eventId(last))
        }
        let displayToken = role == .presenter ? access.token(for: .display(session.id)) : nil
        let joinURL = publicURL.joinURL(code: view.joinCode, key: JoinLink.key(for: session.id, access.credentials), request: request)
        return json(Snapshot(view: view, displayToken: displayToken, joinUrl: joinURL))
    }

    struct EventAck: Encodable { let eventId: String }

    func endSession(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let logged = try await run(.endSession, on: session)
        context.logger.info("session ended", metadata: ["session": "\(session.id)"])
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct JoiningBody: Decodable { let open: Bool }

    /// The presenter closes the session to new participants (or opens it again). Those who
    /// joined keep voting.
    func setJoining(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let body = try await decode(JoiningBody.self, request, context)
        let logged = try await run(.setJoining(open: body.open), on: session)
        context.logger.info(body.open ? "joining opened" : "joining closed", metadata: ["session": "\(session.id)"])
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct RotateBody: Decodable { let link: SessionLink }
    struct RotatedResponse: Encodable { let link: SessionLink; let token: String; let eventId: String }

    /// Replaces the presenter or display link: the old token stops working at once and every
    /// stream opened with it ends (close code 4401).
    func rotateLink(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let body = try await decode(RotateBody.self, request, context)
        let logged = try await run(.rotateLink(body.link), on: session)
        let ended = hub.revoke(sessionId: session.id, link: body.link)
        context.logger.notice("\(body.link.rawValue) link rotated", metadata: ["session": "\(session.id)", "streams_closed": "\(ended)"])
        let grant: Grant = body.link == .presenter ? .presenter(session.id) : .display(session.id)
        let token = access.token(for: grant)
        var response = json(RotatedResponse(link: body.link, token: token, eventId: hub.eventId(logged.last.sequence)))
        if body.link == .presenter, !access.grants(of: request).contains(.operator) {
            // The presenter who rotated keeps working in this browser.
            response.headers.append(access.cookie(for: grant, token: token, maxAge: 7 * 24 * 3600))
        }
        return response
    }

    // MARK: polls

    struct CreatePollBody: Decodable {
        let question: String
        let options: [String]
        let kind: PollKind?
        let resultsVisibility: ResultsVisibility?
        let open: Bool?
    }

    struct PollCreatedResponse: Encodable { let pollId: String; let eventId: String; let poll: Poll }

    func createPoll(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let body = try await decode(CreatePollBody.self, request, context)
        var rng = SystemRandomNumberGenerator()
        let pollId = IdentifierAlphabet.make(length: 8, using: &rng)
        let command = SessionCommand.createPoll(
            .init(
                pollId: pollId, question: body.question, options: body.options, kind: body.kind ?? .single,
                resultsVisibility: body.resultsVisibility ?? .live, openImmediately: body.open ?? false))
        let logged = try await run(command, on: session)
        let poll = session.read { state, _ in state.poll(pollId)! }
        var response = json(
            PollCreatedResponse(pollId: pollId, eventId: hub.eventId(logged.last.sequence), poll: poll), status: .created)
        response.headers[.location] = "/api/v1/sessions/\(session.id)/polls/\(pollId)"
        return response
    }

    func pollCommand(
        _ request: Request, _ context: TallyRequestContext, _ command: (PollID) -> SessionCommand
    ) async throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let pollId = try self.pollId(context)
        let logged = try await run(command(pollId), on: session)
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    // MARK: participants

    struct JoinBody: Decodable { let joinCode: String; let joinKey: String? }
    struct JoinResponse: Encodable {
        let sessionId: String
        let participantId: String
        let participantToken: String
        let title: String
    }

    /// Joins by a typed code (counted against wrong-code budgets) or by the join link's key
    /// (the QR code), which never shares the typed-code lockout: an attacker typing codes from
    /// the same address cannot keep an honest phone that scanned the code out.
    func join(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let ip = Limits.ip(context)
        let body = try await decode(JoinBody.self, request, context)
        let session: LiveSession
        if let key = body.joinKey {
            let linked = JoinCode(body.joinCode).flatMap { venue.session(joinCode: $0) }
            // The key is checked (in constant time) whether or not the code names a session, so
            // neither the answer nor its timing tells a guesser which codes exist.
            let matches = JoinLink.matches(key, session: linked?.id ?? "-", access.credentials)
            guard let linked, matches else {
                // A wrong key is a wrong guess; only a right one skips the typed-code lockout.
                try limits.checkGuesses(from: ip, in: venue)
                limits.failedGuess(from: ip, in: venue)
                throw Problem(.notFound, "this join link is not valid; type the code shown on the screen instead")
            }
            session = linked
        } else {
            session = try limits.session(joinCode: body.joinCode, from: ip, in: venue)
        }
        let (title, lifecycle) = session.read { state, _ in (state.title, state.lifecycle) }
        guard lifecycle == .active else { throw Problem(.gone, "this session has ended; ask for the new join code") }
        // A phone that already joined (cookie or bearer) keeps its identity and its ballots.
        for grant in access.grants(of: request) {
            if case .participant(session.id, let existing) = grant,
                session.read({ state, _ in state.participants.contains(existing) })
            {
                return joined(session, existing, title: title, status: .ok)
            }
        }
        // Only a new participant draws on the address's budget.
        if let wait = limits.joinsPerIP.take(ip) { throw Limits.tooMany(wait, "too many new participants from your address") }
        var rng = SystemRandomNumberGenerator()
        let participant = IdentifierAlphabet.make(length: 12, using: &rng)
        _ = try await run(.join(participant), on: session)
        return joined(session, participant, title: title, status: .created)
    }

    private func joined(_ session: LiveSession, _ participant: ParticipantID, title: String, status: HTTPResponse.Status) -> Response {
        let grant = Grant.participant(session.id, participant)
        let token = access.credentials.token(for: grant)
        var response = json(
            JoinResponse(sessionId: session.id, participantId: participant, participantToken: token, title: title), status: status)
        response.headers.append(access.cookie(for: grant, token: token, maxAge: 7 * 24 * 3600))
        return response
    }

    struct VoteBody: Decodable { let optionIds: [String] }
    struct VoteResponse: Encodable {
        let pollId: String
        let optionIds: [String]
        let replaced: Bool
        let eventId: String
    }

    func vote(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try self.session(context)
        let participant = try access.requireParticipant(request, of: session.id)
        if let wait = limits.votesPerParticipant.take(participant) { throw Limits.tooMany(wait, "voting too fast") }
        if let wait = limits.votesPerIP.take(Limits.ip(context)) { throw Limits.tooMany(wait, "too many votes from your network") }
        let pollId = try self.pollId(context)
        let body = try await decode(VoteBody.self, request, context)
        let cast = try await run(.vote(participant: participant, poll: pollId, optionIds: body.optionIds), on: session)
        metrics.votes.increment()
        // New or replaced as the session's writer decided it: of two racing first ballots, one is new.
        return json(
            VoteResponse(pollId: pollId, optionIds: body.optionIds, replaced: cast.replacedBallot, eventId: hub.eventId(cast.last.sequence)),
            status: cast.replacedBallot ? .ok : .created)
    }

    /// The presenter's download of the results. In JSON, ballots carry a pseudonym per poll
    /// unless `?linkParticipants=true` asks for one per participant across the session.
    func export(_ request: Request, _ context: TallyRequestContext, csv: Bool) throws -> Response {
        let session = try self.session(context)
        try access.requirePresenter(request, of: session.id)
        let scope: ParticipantPseudonyms.Scope
        switch request.uri.queryParameters["linkParticipants"].map(String.init) {
        case nil, "false"?: scope = .perPoll
        case "true"?: scope = .linked
        case let other?: throw Problem(.badRequest, "linkParticipants is true or false, got \"\(other.prefix(40))\"")
        }
        let pseudonyms = access.credentials.pseudonyms(scope)
        let times = csv ? [:] : ((try? projection.ballotTimes(session: session.id)) ?? [:])
        let (body, title) = session.read { state, _ in
            (csv ? Data(SessionExport.csv(state).utf8) : SessionExport.json(state, times: times, pseudonyms: pseudonyms), state.title)
        }
        let safe = String(title.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        return Response(
            status: .ok,
            headers: [
                .contentType: csv ? "text/csv; charset=utf-8" : "application/json",
                .contentDisposition: "attachment; filename=\"tally-\(safe)-\(session.id).\(csv ? "csv" : "json")\"",
                .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    // MARK: helpers

    private func run(_ command: SessionCommand, on session: LiveSession) async throws -> Executed {
        let executed = try session.execute(command)
        try await durable(executed.last.sequence)
        return executed
    }

    private func durable(_ sequence: UInt64) async throws {
        do {
            try await log.waitUntilDurable(sequence)
        } catch {
            throw Problem(.serviceUnavailable, "the event log cannot accept writes; the appliance needs a restart")
        }
    }

    private func session(_ context: TallyRequestContext) throws -> LiveSession {
        let id = context.parameters.get("sessionId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id), let session = venue.session(id) else {
            throw Problem(.notFound, "no session \(IdentifierAlphabet.isWellFormed(id) ? id : "with that id")")
        }
        return session
    }

    private func pollId(_ context: TallyRequestContext) throws -> PollID {
        let id = context.parameters.get("pollId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id) else { throw Problem(.notFound, "no poll with that id in this session") }
        return id
    }
}

/// Decodes a JSON request body, turning every failure into a precise 400 or 413.
func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: TallyRequestContext) async throws -> T {
    if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
        throw Problem(.unsupportedMediaType, "send the body as application/json")
    }
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: context.maxUploadSize)
    } catch {
        throw Problem(.contentTooLarge, "request body is larger than \(context.maxUploadSize / 1024) KiB")
    }
    guard buffer.readableBytes > 0 else { throw Problem(.badRequest, "the request needs a JSON body") }
    if jsonNestingDepth(buffer.readableBytesView) > maxJSONNesting {
        throw Problem(.badRequest, "the JSON body is nested deeper than \(maxJSONNesting) levels")
    }
    do {
        return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
    } catch let error as DecodingError {
        throw Problem(.badRequest, describe(error))
    } catch {
        throw Problem(.badRequest, "the body is not valid JSON")
    }
}

/// Our bodies are at most two levels deep; anything far deeper is an attack on the parser.
let maxJSONNesting = 16

/// The deepest nesting of arrays and objects, outside strings, in one pass without parsing.
func jsonNestingDepth(_ bytes: some Sequence<UInt8>) -> Int {
    var depth = 0, deepest = 0
    var inString = false, escaped = false
    for byte in bytes {
        if inString {
            if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            depth += 1
            deepest = max(deepest, depth)
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
    return deepest
}

private func describe(_ error: DecodingError) -> String {
    func path(_ p: [any CodingKey]) -> String {
        p.isEmpty ? "the body" : "'" + p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "'"
    }
    switch error {
    case .keyNotFound(let key, let ctx): return "missing field \(path(ctx.codingPath + [key]))"
    case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)) must be \(describe(type))"
    case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)) must be \(describe(type)), not null"
    case .dataCorrupted(let ctx):
        if ctx.codingPath.isEmpty { return "the body is not valid JSON" }
        if ctx.debugDescription.hasPrefix("must be") { return "\(path(ctx.codingPath)) \(ctx.debugDescription)" }
        return "\(path(ctx.codingPath)) has an unexpected value"
    @unknown default: return "the body does not match the expected shape"
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "true or false"
    case is [String].Type: "an array of strings"
    case is Int.Type, is Double.Type: "a number"
    default: type is any Collection.Type ? "an array" : "an object"
    }
}

/// A JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONEncoder.tally.encode(value)) ?? Data("{}".utf8)
    return Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

extension JSONEncoder {
    /// Sorted keys: stable, diffable output in logs, tests and browser tools.
    static var tally: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

/// Loopback, private (RFC 1918), link-local and unique-local addresses: the venue's own network.
enum LocalNetwork {
    static func contains(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return address.protocol == .unix }
        if ip.contains(".") {
            let o = ip.split(separator: ".").compactMap { Int($0) }
            guard o.count == 4 else { return false }
            return o[0] == 127 || o[0] == 10 || (o[0] == 172 && (16...31).contains(o[1])) || (o[0] == 192 && o[1] == 168)
                || (o[0] == 169 && o[1] == 254) || (o[0] == 100 && (64...127).contains(o[1]))
        }
        let lower = ip.lowercased()
        if lower.hasPrefix("::ffff:") { return (try? SocketAddress(ipAddress: String(lower.dropFirst(7)), port: 0)).map(contains) ?? false }
        return lower == "::1" || lower.hasPrefix("fe80:") || lower.hasPrefix("fc") || lower.hasPrefix("fd")
    }

    /// The appliance itself (127.0.0.0/8, ::1, or a Unix socket).
    static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress?.lowercased() else { return address.protocol == .unix }
        let v4 = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
        return v4.hasPrefix("127.") || ip == "::1"
    }
}
