import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyEventLog
import TallyRealtime

/// Sessions: the operator opens and lists them; a presenter runs one (joining, links, the end);
/// everyone taking part reads its snapshot.
struct SessionsController {
    let venue: Venue
    let hub: EventHub
    let access: Access
    let log: any EventLog
    let publicURL: PublicURL

    func addRoutes(to api: APIRoutes) {
        let staff = api.role(.operator)
        staff.post("sessions", use: createSession)
        staff.get("sessions", use: listSessions)
        api.role(.viewer).get("sessions/:sessionId", use: getSession)
        let presenter = api.role(.presenter)
        presenter.post("sessions/:sessionId/end", use: endSession)
        presenter.post("sessions/:sessionId/joining", use: setJoining)
        presenter.post("sessions/:sessionId/nicknames", use: setNicknames)
        presenter.post("sessions/:sessionId/links/rotate", use: rotateLink)
    }

    struct CreateSessionBody: Decodable {
        let title: String
        /// `required`: participants choose a nickname when they join (for a quiz's leaderboard).
        let nicknames: NicknamePolicy?
    }
    struct SessionCreatedResponse: Encodable {
        let sessionId: String
        let joinCode: String
        let presenterToken: String
        let displayToken: String
        let eventId: String
    }

    func createSession(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let body = try await decode(CreateSessionBody.self, request, context)
        let (session, created) = try await venue.createSession(title: body.title, nicknames: body.nicknames)
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
        let session = try context.caller.requireSession()
        // In a cluster: never older than what was committed when asked (the caller's last
        // command may have gone to another instance).
        await venue.catchUp()
        // The role check resolved what the caller is here (presenter, display or participant).
        guard let role = context.caller.role else { throw Problem(.internalServerError, "internal error") }
        let participant = context.caller.participant
        var order = QuestionOrder.top
        if let raw = request.uri.queryParameters["order"] {
            guard let chosen = QuestionOrder(rawValue: String(raw)) else { throw Problem(.badRequest, "order must be top or newest") }
            order = chosen
        }
        // Copy out under the lock (copy-on-write: cheap), build the view outside it, so a
        // snapshot never holds up the session's writer.
        let (state, last) = session.read { ($0, $1) }
        let view = state.view(for: role, participant: participant, lastEventId: hub.eventId(last), questionOrder: order)
        let displayToken = role == .presenter ? access.token(for: .display(session.id)) : nil
        let joinURL = publicURL.joinURL(code: view.joinCode, key: JoinLink.key(for: session.id, access.credentials), request: request)
        return json(Snapshot(view: view, displayToken: displayToken, joinUrl: joinURL))
    }

    func endSession(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let logged = try await session.run(.endSession)
        context.logger.info("session ended", metadata: ["session": "\(session.id)"])
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct JoiningBody: Decodable { let open: Bool }

    /// The presenter closes the session to new participants (or opens it again). Those who
    /// joined keep voting.
    func setJoining(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let body = try await decode(JoiningBody.self, request, context)
        let logged = try await session.run(.setJoining(open: body.open))
        context.logger.info(body.open ? "joining opened" : "joining closed", metadata: ["session": "\(session.id)"])
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct NicknamesBody: Codable { let nicknames: NicknamePolicy }

    /// The presenter makes nicknames required (or optional) for participants who join from now.
    func setNicknames(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let body = try await decode(NicknamesBody.self, request, context)
        _ = try await session.run(.setNicknames(body.nicknames))
        context.logger.info("nicknames \(body.nicknames.rawValue)", metadata: ["session": "\(session.id)"])
        return json(body)
    }

    struct RotateBody: Decodable { let link: SessionLink }
    struct RotatedResponse: Encodable {
        let link: SessionLink
        let token: String
        let eventId: String
    }

    /// Replaces the presenter or display link: the old token stops working at once and every
    /// stream opened with it ends (close code 4401).
    func rotateLink(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let body = try await decode(RotateBody.self, request, context)
        let logged = try await session.run(.rotateLink(body.link))
        let ended = hub.revoke(sessionId: session.id, link: body.link)
        context.logger.notice("\(body.link.rawValue) link rotated", metadata: ["session": "\(session.id)", "streams_closed": "\(ended)"])
        let grant: Grant = body.link == .presenter ? .presenter(session.id) : .display(session.id)
        let token = access.token(for: grant)
        var response = json(RotatedResponse(link: body.link, token: token, eventId: hub.eventId(logged.last.sequence)))
        if body.link == .presenter, !context.caller.grants.contains(.operator) {
            // The presenter who rotated keeps working in this browser.
            response.headers.append(access.cookie(for: grant, token: token, maxAge: 7 * 24 * 3600))
        }
        return response
    }
}
