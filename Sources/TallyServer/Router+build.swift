import Hummingbird
import Logging
import TallyEventLog
import TallyRealtime

/// The HTTP routes behind the middlewares every request passes (a WebSocket upgrade of
/// `/events` is taken before them, by `EventsChannel`; its SSE form is a route here). API routes
/// are mounted by the role they need (`APIRoutes`).
func buildRouter(
    configuration: TallyConfiguration, hosts: HostAllowlist, venue: Venue, hub: EventHub, events: EventsController,
    access: Access, password: OperatorPassword, log: any EventLog, projection: SQLiteProjection?, publicURL: PublicURL, limits: Limits,
    setupCode: SetupCode?, metrics: ServerMetrics, console: OperatorConsole, logger: Logger
) -> (router: Router<TallyRequestContext>, roles: [String: RouteRole]) {
    let router = Router(context: TallyRequestContext.self, options: .autoGenerateHeadEndpoints)
    // Middlewares first (they wrap only the routes added after them).
    // First: every later middleware and route sees who the request is from.
    router.add(middleware: ClientAddressMiddleware(trustedProxies: configuration.trustedProxies))
    if !configuration.trustedProxies.isEmpty {
        logger.info("trusted proxies may name the client", metadata: ["trusted_proxies": "\(configuration.trustedProxies)"])
    }
    router.add(middleware: RequestLogMiddleware(metrics: metrics))
    router.add(middleware: SecurityHeadersMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: HostAllowlistMiddleware(allowlist: hosts))
    router.add(middleware: SameOriginMiddleware())

    let api = APIRoutes(router: router, access: access, venue: venue)
    SignInController(access: access, password: password, limits: limits, hub: hub, setupCode: setupCode).addRoutes(to: api)
    SessionsController(venue: venue, hub: hub, access: access, log: log, publicURL: publicURL).addRoutes(to: api)
    PollsController(hub: hub, metrics: metrics, limits: limits).addRoutes(to: api)
    QnAController(hub: hub, limits: limits).addRoutes(to: api)
    QuizController(hub: hub).addRoutes(to: api)
    TemplatesController(venue: venue, hub: hub, access: access).addRoutes(to: api)
    JoinController(venue: venue, access: access, publicURL: publicURL, limits: limits).addRoutes(to: api)
    ExportController(access: access, projection: projection).addRoutes(to: api)
    WiFiController(wifi: configuration.wifi).addRoutes(to: api)
    OperatorController(console: console, access: access).addRoutes(to: api)
    BackupController(dataDirectory: configuration.dataDirectory, clustered: configuration.store != nil, logger: logger).addRoutes(to: api)
    HealthController(venue: venue, hub: hub, log: log, projection: projection, retention: configuration.retention)
        .addRoutes(to: router, api: api)

    events.addRoutes(to: router)
    PagesController().addRoutes(to: router)
    metrics.addRoutes(to: router, access: access)
    return (router, api.roles)
}
