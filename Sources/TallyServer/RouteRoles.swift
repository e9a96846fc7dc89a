import HTTPTypes
import Hummingbird
import Synchronization
import TallyDomain

/// Who may call a route under `/api/v1`. Every route there is mounted in the group of the role
/// it needs (see `APIRoutes`), so the check runs before any handler and a route cannot forget it.
enum RouteRole: String, Sendable, CaseIterable {
    /// No credential needed: signing in, joining, the room's Wi-Fi, the API document. Handlers
    /// here may still refuse (first-run set-up only from the local network, for one).
    case anyone
    /// Venue staff.
    case `operator`
    /// The operator, or the presenter of the session in the path.
    case presenter
    /// Anyone taking part in the session in the path: its presenter (or the operator), its
    /// displays and its participants.
    case viewer
    /// A participant who joined the session in the path.
    case participant

    /// Roles that act on the session named by `{sessionId}`: it is looked up (404) first.
    var isPerSession: Bool { self == .presenter || self == .viewer || self == .participant }

    /// The refusal's reason, unless a route gives its own.
    var requirement: String {
        switch self {
        case .anyone: ""
        case .operator: "only the operator may do this"
        case .presenter: "only this session's presenter may do this"
        case .viewer: "this session is visible to its presenter, displays and participants"
        case .participant: "only participants who joined this session may vote"
        }
    }
}

/// The caller of an `/api/v1` request, resolved once by `RequireRole` before the handler runs.
struct Caller: Sendable {
    /// Every valid grant the request carries (empty: nobody signed in).
    var grants: [Grant] = []
    /// On a per-session route: the session of the path, and what the grants make the caller there.
    var session: LiveSession?
    var role: Role?
    var participant: ParticipantID?

    /// The session of the path. Present on every route of a per-session role; its absence is
    /// a route mounted in the wrong group, refused rather than served unchecked.
    func requireSession() throws -> LiveSession {
        guard let session else { throw Problem(.internalServerError, "internal error") }
        return session
    }

    /// The participant calling (routes of the participant role).
    func requireParticipant() throws -> ParticipantID {
        guard let participant else { throw Problem(.internalServerError, "internal error") }
        return participant
    }

    var isOperator: Bool { grants.contains(.operator) }
}

/// Resolves the caller's grants into the context, then refuses a caller without the route's
/// role: 401 with no valid credential at all, 403 with credentials that do not cover it.
struct RequireRole: RouterMiddleware {
    typealias Context = TallyRequestContext

    let role: RouteRole
    let access: Access
    let venue: Venue
    /// Also honour a `token` query parameter (images a page embeds cannot send a header).
    var tokenInQuery = false
    /// The reason given when refused (the role's own by default).
    var requirement: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let queryToken = tokenInQuery ? request.uri.queryParameters["token"].map(String.init) : nil
        context.caller.grants = access.grants(of: request, queryToken: queryToken)
        let grants = context.caller.grants
        let what = requirement ?? role.requirement
        if role == .operator, !grants.contains(.operator) { throw Access.denied(grants, what) }
        if role.isPerSession {
            let id = context.parameters.get("sessionId") ?? ""
            guard IdentifierAlphabet.isWellFormed(id), let session = await venue.findSession(id) else {
                throw Problem(.notFound, "no session \(IdentifierAlphabet.isWellFormed(id) ? id : "with that id")")
            }
            let viewer = Access.viewer(grants, of: session.id)
            switch role {
            case .presenter where viewer?.0 != .presenter, .viewer where viewer == nil:
                throw Access.denied(grants, what)
            case .participant:
                // Only a participant's own credential votes: an operator or presenter is not one.
                guard let participant = Access.participant(grants, of: session.id) else { throw Access.denied(grants, what) }
                context.caller.participant = participant
            default:
                break
            }
            context.caller.session = session
            context.caller.role = viewer?.0
            if context.caller.participant == nil { context.caller.participant = viewer?.1 }
        }
        return try await next(request, context)
    }
}

/// Every route of one role: `RouterMethods`, so controllers add routes the usual Hummingbird
/// way, and each route is mounted behind `RequireRole` and recorded with its role.
struct RoleRoutes: RouterMethods {
    typealias Context = TallyRequestContext

    let role: RouteRole
    fileprivate let group: RouterGroup<Context>
    fileprivate let book: RouteBook

    @discardableResult
    func on<Responder: HTTPResponder>(_ path: RouterPath, method: HTTPRequest.Method, responder: Responder) -> Self
    where Responder.Context == Context {
        book.record("\(method) /\(APIRoutes.prefix)/\(path.description.drop(while: { $0 == "/" }))", role)
        group.on(path, method: method, responder: responder)
        return self
    }

    @discardableResult
    func add(middleware: any MiddlewareProtocol<Request, Response, Context>) -> Self {
        group.add(middleware: middleware)
        return self
    }
}

/// `/api/v1`, handed to controllers as groups by role: the only way an API route is mounted.
struct APIRoutes {
    static let prefix = "api/v1"

    private let router: Router<TallyRequestContext>
    private let access: Access
    private let venue: Venue
    fileprivate let book = RouteBook()

    init(router: Router<TallyRequestContext>, access: Access, venue: Venue) {
        self.router = router
        self.access = access
        self.venue = venue
    }

    /// The routes of `role`; `requirement` replaces the role's reason when a caller is refused.
    func role(_ role: RouteRole, tokenInQuery: Bool = false, requirement: String? = nil) -> RoleRoutes {
        let group = router.group(RouterPath(Self.prefix)).add(
            middleware: RequireRole(role: role, access: access, venue: venue, tokenInQuery: tokenInQuery, requirement: requirement))
        return RoleRoutes(role: role, group: group, book: book)
    }

    /// "METHOD /path" → the role it was mounted with, for every API route.
    var roles: [String: RouteRole] { book.roles }
}

/// The record of which role each API route was mounted with (read by the tests).
final class RouteBook: Sendable {
    private let entries = Mutex<[String: RouteRole]>([:])

    func record(_ route: String, _ role: RouteRole) {
        entries.withLock { $0[route] = role }
    }

    var roles: [String: RouteRole] { entries.withLock { $0 } }
}
