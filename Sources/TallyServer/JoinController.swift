import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TallyDomain

/// Joining a session with its code: participants' phones (typed, or the join link's QR code)
/// and the room's screens (pairing a display).
struct JoinController {
    let venue: Venue
    let access: Access
    let publicURL: PublicURL
    let limits: Limits

    func addRoutes(to api: APIRoutes) {
        let anyone = api.role(.anyone)
        anyone.post("join", use: join)
        anyone.post("display/pair", use: pair)
        // An <img> on a display cannot send a header: its token may come in the query.
        api.role(.viewer, tokenInQuery: true, requirement: "the QR code is for this session's presenter, displays and participants")
            .get("sessions/:sessionId/qr.svg", use: qr)
    }

    struct JoinBody: Decodable {
        let joinCode: String
        let joinKey: String?
        /// Shown on a quiz's leaderboard; required when the session says so.
        let nickname: String?
    }
    struct JoinResponse: Encodable {
        let sessionId: String
        let participantId: String
        let participantToken: String
        let title: String
        let nickname: String?
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
        let (title, lifecycle, policy) = session.read { state, _ in (state.title, state.lifecycle, state.nicknamePolicy) }
        guard lifecycle == .active else { throw Problem(.gone, "this session has ended; ask for the new join code") }
        // A phone that already joined (cookie or bearer) keeps its identity and its ballots.
        for grant in context.caller.grants {
            if case .participant(session.id, let existing) = grant,
                session.read({ state, _ in state.participants.contains(existing) })
            {
                return joined(session, existing, title: title, status: .ok)
            }
        }
        // The page asks for a nickname when it reads this type.
        if body.nickname == nil, policy == .required {
            throw Problem(.badRequest, "this session asks for a nickname", type: "/problems/nickname-required")
        }
        // A nickname that would be refused costs nothing of the address's budget.
        if let nickname = body.nickname {
            let refusal: DomainError? = session.read { state, _ in
                do throws(DomainError) {
                    try state.check(nickname: nickname, limits: venue.limits)
                    return nil
                } catch { return error }
            }
            if case .conflict(let detail) = refusal { throw Problem(.conflict, detail, type: "/problems/nickname-taken") }
            if let refusal { throw Problem.from(refusal) }
        }
        // Only a new participant draws on the address's budget.
        if let wait = limits.takeJoin(ip) { throw Limits.tooMany(wait, "too many new participants from your address") }
        var rng = SystemRandomNumberGenerator()
        let participant = IdentifierAlphabet.make(length: 12, using: &rng)
        do {
            _ = try await session.run(.join(participant, nickname: body.nickname))
        } catch CommandFailure.refused(.conflict(let detail)) where detail.contains("nickname") {
            throw Problem(.conflict, detail, type: "/problems/nickname-taken")
        }
        return joined(session, participant, title: title, status: .created)
    }

    private func joined(_ session: LiveSession, _ participant: ParticipantID, title: String, status: HTTPResponse.Status) -> Response {
        let grant = Grant.participant(session.id, participant)
        let token = access.credentials.token(for: grant)
        let nickname = session.read { state, _ in state.nickname(of: participant) }
        var response = json(
            JoinResponse(sessionId: session.id, participantId: participant, participantToken: token, title: title, nickname: nickname),
            status: status)
        response.headers.append(access.cookie(for: grant, token: token, maxAge: 7 * 24 * 3600))
        return response
    }

    /// The join URL as a QR code, for screens and the presenter.
    func qr(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let code = session.read { state, _ in state.joinCode.value }
        let url = publicURL.joinURL(code: code, key: JoinLink.key(for: session.id, access.credentials), request: request)
        guard let svg = QRCode.svg(for: url) else {
            throw Problem(.internalServerError, "could not draw the QR code")
        }
        return Response(
            status: .ok, headers: [.contentType: "image/svg+xml", .cacheControl: "private, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: svg)))
    }

    struct Paired: Encodable {
        let sessionId: String
        let displayToken: String
    }

    /// A screen typed the join code: give it the session's display credential.
    func pair(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // The join code grants a display credential: guessing it is throttled like joining.
        let body = try await decode(JoinBody.self, request, context)
        let session = try limits.session(joinCode: body.joinCode, from: Limits.ip(context), in: venue)
        guard session.read({ state, _ in state.lifecycle == .active }) else {
            throw Problem(.gone, "this session has ended; ask for the new join code")
        }
        return json(Paired(sessionId: session.id, displayToken: access.token(for: .display(session.id))))
    }
}
