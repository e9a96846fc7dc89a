import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import TallyDiscovery
import TallyDomain
import TallyEventLog
import TallyRealtime
import UnixSignals

/// The whole appliance, ready to run: the HTTP/WebSocket server and the long-lived parts
/// beside it, in one service group.
public struct TallyApplication: Sendable {
    let application: Application<RouterResponder<TallyRequestContext>>
    /// With TLS and `http-redirect-port`: the plain-HTTP listener that sends people to https.
    let redirect: Application<HTTPSRedirect>?
    let streams: StreamKeeper
    /// Publishes `poll.results` after ballots; drains its pending results at shutdown.
    let results: ResultsCoalescer
    /// Closes quiz questions at their `closesAt`.
    let countdowns: Countdowns
    /// The operator's console: samples the instruments, feeds `GET /api/v1/operator/status`.
    let console: OperatorConsole
    let advertiser: AdvertiserService?
    let systemd: SystemdService
    /// One box: writes the ring's events to SQLite; drained after the services stop.
    let projectionWriter: ProjectionWriter?
    /// A cluster: the writer, the listener and the connection pool; stopped after the services.
    let cluster: ClusterParts?
    let configuration: TallyConfiguration
    let logger: Logger
    /// "METHOD /path" → the role each `/api/v1` route was mounted with (checked by the tests).
    let routeRoles: [String: RouteRole]
    /// "METHOD /path" of every HTTP route (checked against openapi.yaml by the tests).
    let routes: [String]

    /// Runs until SIGTERM/SIGINT (or cancellation). Shutdown publishes the results still
    /// pending, then ends every open stream, then lets the server drain, within
    /// `configuration.shutdownGrace`.
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        typealias Entry = ServiceGroupConfiguration.ServiceConfiguration
        // The https redirect listener starts and stops with the server it points at.
        let servers: [Entry] = [.init(service: application)] + (redirect.map { [Entry(service: $0)] } ?? [])
        let beside: [Entry] =
            [.init(service: systemd)]
            // Withdrawn before the server stops, so nobody is sent to a box going away.
            + (advertiser.map { [Entry(service: $0)] } ?? [])
        // Services stop in the reverse order of this list.
        let last: [Entry] = [
            // Near the end, so early to hear about shutdown: streams end before the server
            // waits for connections to finish.
            .init(service: streams),
            // Before the streams keeper stops: console streams end with the others.
            .init(service: console),
            .init(service: countdowns),
            // Last, so first to stop: the results still pending are published and durable
            // before the streams that carry them end.
            .init(service: results),
        ]
        var group = ServiceGroupConfiguration(
            services: servers + beside + last,
            gracefulShutdownSignals: gracefulShutdownSignals,
            logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownGrace
        try await ServiceGroup(configuration: group).run()
        projectionWriter?.drain()
        await cluster?.stop()
        logger.info("stopped")
    }
}

/// Keeps the streams alive (SSE heartbeats) and ends them all on graceful shutdown.
struct StreamKeeper: Service {
    let hub: EventHub
    /// Operator sign-ins ended from outside (`tally reset-password`) end their streams here.
    let signIns: OperatorSignIns
    let log: any EventLog
    let interval: Duration
    let retention: TimeInterval
    let logger: Logger

    func run() async {
        await withGracefulShutdownHandler {
            // Ends (with a CancellationError, which is the normal way out) at shutdown.
            try? await cancelWhenGracefulShutdown {
                var warned = false
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    hub.keepAlive()
                    hub.endOperatorStreams { !signIns.honours($0) }
                    let reach = log.reach()
                    if reach.limitedByCapacity, !warned {
                        warned = true
                        logger.warning(
                            "the event ring is full: replay now reaches back less than the retention age; a larger --ring-size keeps more",
                            metadata: [
                                "oldest_age_s": "\(reach.oldestTimestamp.map { Int(Date().timeIntervalSince($0)) } ?? 0)",
                                "retention_s": "\(Int(retention))",
                            ])
                    }
                }
            }
        } onGracefulShutdown: {
            hub.endAll()
        }
    }
}

/// Opens the data directory, recovers every session from the event log, and builds the server.
public func buildApplication(_ configuration: TallyConfiguration, logger: Logger) async throws -> TallyApplication {
    // First, before anything is opened or created: a certificate that cannot be used stops the start.
    let certificate = try configuration.tlsCertificate.flatMap { path in
        try configuration.tlsKey.map { try VenueCertificate(certificatePath: path, keyPath: $0) }
    }
    if let certificate {
        let left = certificate.notValidAfter.timeIntervalSinceNow
        if left < 14 * 24 * 3600 {
            logger.warning(
                left < 0 ? "the TLS certificate has expired: phones will refuse it" : "the TLS certificate expires soon",
                metadata: ["not_valid_after": "\(certificate.notValidAfter)"])
        }
        if let url = configuration.publicURL, !url.lowercased().hasPrefix("https://") {
            logger.warning("TLS is on but public-url is not https: join links and QR codes will point at plain HTTP")
        }
    }
    let notifier = SystemdNotifier()
    let storage =
        try await configuration.store == nil
        ? openAppliance(configuration, notifier: notifier, logger: logger) : openCluster(configuration, logger: logger)
    let (venue, log, settings) = (storage.venue, storage.log, storage.settings)
    let password = try OperatorPassword(configured: configuration.operatorPassword, settings: settings)
    let access = Access(
        credentials: Credentials(
            secret: try await applianceSecret(settings), operatorKey: try await applianceSecret(settings, key: operatorKeySetting)),
        signIns: OperatorSignIns(settings: settings),
        linkGeneration: { [venue] session, link in venue.linkGeneration(session, link) },
        secureCookies: configuration.usesTLS || (configuration.publicURL?.lowercased().hasPrefix("https://") ?? false))
    if configuration.limits.blocklist.count > 0 {
        logger.info(
            "blocklist loaded: matching words and answers are counted but never shown",
            metadata: ["entries": "\(configuration.limits.blocklist.count)"])
    }

    let metrics = ServerMetrics()
    let hub = EventHub(epoch: log.epoch, publishedThrough: log.durableSequence, metrics: metrics.realtime)
    log.onDurable { batch in hub.publish(batch) }
    storage.projectionWriter?.start()

    let hosts = HostAllowlist(publicURL: configuration.publicURL, extra: configuration.allowedHosts)
    let publicURL = PublicURL(configured: configuration.publicURL, port: configuration.port, scheme: certificate == nil ? "http" : "https")
    let limits = Limits(
        enabled: configuration.rateLimits, network: configuration.network, flatJoinsPerMinute: configuration.flatJoinsPerMinute,
        shared: storage.cluster.map { cluster -> @Sendable (LimitCharge) -> Void in { charge in cluster.share(charge) } })
    storage.cluster?.start(limits: limits)
    if !configuration.rateLimits { logger.warning("rate limits are off (rate-limits = no): for benchmarks, not for a venue") }
    // Whoever can see the box's screen or its log chooses the operator password; nobody else.
    let setupCode = password.isSet ? nil : SetupCode.random()
    // Who may watch what on /events: the SSE route here, and the gate of the WebSocket upgrade.
    let events = EventsController(
        venue: venue, hub: hub, access: access, limits: limits, log: log, retention: configuration.retention,
        queueLimit: configuration.streamQueueLimit, hosts: hosts, trustedProxies: configuration.trustedProxies,
        catchUp: storage.cluster.map { cluster -> @Sendable (UInt64) async -> Void in
            { sequence in await cluster.writer.waitUntilFolded(sequence) }
        })
    let mdnsName =
        configuration.name ?? "Tally on \(ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "appliance")"
    let advertising = AdvertisingStatus(
        configuration.mdns
            ? .init(phase: .starting, name: mdnsName, reason: "waiting for the listener")
            : .init(phase: .disabled, name: mdnsName, reason: "mDNS is off (--no-mdns)"))
    let console = OperatorConsole(
        sources: .init(
            venue: venue, hub: hub, log: storage.consoleLog, metrics: metrics, configuration: configuration, publicURL: publicURL,
            advertising: advertising))
    let (router, routeRoles) = buildRouter(
        configuration: configuration, hosts: hosts, venue: venue, hub: hub, events: events, access: access, password: password,
        log: log, projection: storage.projection, publicURL: publicURL, limits: limits, setupCode: setupCode, metrics: metrics,
        console: console, logger: logger)

    if let setupCode {
        logger.notice(
            "no operator password is set: open /presenter and choose one with set-up code \(setupCode.value) (also shown on the box's own screen), or start with --operator-password",
            metadata: ["setup_code": "\(setupCode.value)"])
    }
    let host = configuration.host
    let listening = ListenerReady()
    let applianceId = try await applianceIdentifier(settings)
    let advertiser: AdvertiserService? =
        configuration.mdns
        ? AdvertiserService(ready: listening, logger: logger, status: advertising) { port in
            Advertisement(
                name: mdnsName,
                port: port,
                txt: [
                    "txtvers=1", "id=\(applianceId)", "api=/api/v1", "events=/events", "path=/display",
                    "version=\(TallyConfiguration.version)",
                ]
                    // A kiosk must open the display over TLS when the port speaks only TLS.
                    + (certificate == nil ? [] : ["scheme=https"]))
        }
        : nil
    if !configuration.mdns { logger.info("mDNS advertising is off (--no-mdns)") }
    let connections = configuration.connections
    raiseOpenFileLimit(toAtLeast: connections.maxConnections + ConsoleWarnings.descriptorReserve, logger: logger)
    let counter = ConnectionCounter(limits: connections, trustedProxies: configuration.trustedProxies)
    let channelConfiguration = EventsChannel.Configuration(
        http1: .init(
            idleTimeout: TimeAmount(connections.idleTimeout),
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: connections.maxHeadBytes, maxHeaderListSize: connections.maxHeadBytes, maxHeaderFieldCount: 100)),
        // Pings leave each WebSocket from its own event loop, the first after a random part of
        // the period, so phones that connected together are not pinged together.
        pingInterval: configuration.pingInterval,
        unwritableLimit: configuration.streamQueueLimit)
    let tlsPort = BoundPort(configuration.port)
    let application = Application(
        router: router,
        // Every connection starts with TLS (when configured), then the connection guard (caps,
        // request-head deadline), then HTTP/1.1 with the WebSocket upgrade — so HTTP, SSE and
        // WebSocket alike are encrypted, and the guard only ever sees decrypted bytes.
        server: HTTPServerBuilder { responder in
            let guarded = GuardedChannel(
                inner: EventsChannel(responder: responder, configuration: channelConfiguration, gate: events, hub: hub),
                counter: counter, metrics: metrics, behindTLS: certificate != nil)
            guard let certificate else { return guarded }
            return try TLSChannel(guarded, tlsConfiguration: certificate.tlsConfiguration)
        },
        configuration: .init(address: .hostname(host, port: configuration.port), serverName: "Tally"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            tlsPort.set(port)
            let shownHost = host == "0.0.0.0" || host == "::" ? "localhost" : host
            logger.info(
                "listening",
                metadata: ["url": "\(certificate == nil ? "http" : "https")://\(shownHost):\(port)/", "bind": "\(host):\(port)"])
            listening.fire(port: port)
        },
        logger: logger)
    let redirect = configuration.httpRedirectPort.flatMap { redirectPort -> Application<HTTPSRedirect>? in
        guard certificate != nil else { return nil }
        return Application(
            responder: HTTPSRedirect(publicURL: configuration.publicURL, tlsPort: tlsPort),
            // The same guard as the main listener: caps and the request-head deadline hold here too.
            server: HTTPServerBuilder { responder in
                GuardedChannel(
                    inner: HTTP1Channel(
                        responder: responder,
                        configuration: .init(
                            idleTimeout: TimeAmount(connections.idleTimeout),
                            httpDecoderConfiguration: .init(
                                maxHeaderFieldSize: connections.maxHeadBytes, maxHeaderListSize: connections.maxHeadBytes,
                                maxHeaderFieldCount: 100))),
                    counter: counter, metrics: metrics)
            },
            configuration: .init(address: .hostname(host, port: redirectPort), serverName: "Tally"),
            onServerRunning: { channel in
                logger.info(
                    "redirecting plain HTTP to https",
                    metadata: ["bind": "\(host):\(channel.localAddress?.port ?? redirectPort)", "to_port": "\(tlsPort.value)"])
            },
            logger: logger)
    }
    return TallyApplication(
        application: application,
        redirect: redirect,
        streams: StreamKeeper(
            hub: hub, signIns: access.signIns, log: log, interval: configuration.sseHeartbeat, retention: configuration.retention,
            logger: logger),
        results: venue.results,
        countdowns: venue.countdowns,
        console: console,
        advertiser: advertiser,
        systemd: SystemdService(
            notifier: notifier, ready: listening, logger: logger,
            health: { await applianceHealth(log: log, projection: storage.projection, healthFile: configuration.healthFile) },
            status: { "serving \(hub.connectionCount) connections, \(venue.sessionCount) sessions" }),
        projectionWriter: storage.projectionWriter, cluster: storage.cluster,
        configuration: configuration, logger: logger,
        routeRoles: routeRoles,
        routes: router.routes.map { "\($0.method) /\($0.path.description.drop(while: { $0 == "/" }))" })
}

func milliseconds(_ d: Duration) -> Int64 {
    d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
}

/// A start-up failure with a message for the person at the console.
public struct StartupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The appliance's stable id (mDNS TXT `id`): made once, kept in the data directory.
private func applianceIdentifier(_ settings: some SettingsStore) async throws -> String {
    if let id = try settings.setting("appliance_id") { return id }
    var rng = SystemRandomNumberGenerator()
    let id = IdentifierAlphabet.make(length: 16, using: &rng)
    try await settings.setSetting("appliance_id", to: id)
    return id
}

/// The appliance's signing secret: made once, kept in the data directory's database.
private func applianceSecret(_ settings: some SettingsStore, key: String = "secret") async throws -> [UInt8] {
    if let bytes = try storedApplianceSecret(settings, key: key) { return bytes }
    var rng = SystemRandomNumberGenerator()
    let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    try await settings.setSetting(key, to: bytes.map { String(format: "%02x", $0) }.joined())
    return bytes
}

/// The key operator tokens are signed with, apart from the appliance secret: it never leaves the
/// box (backups leave it out), so a backup that reaches the wrong hands cannot mint an operator
/// sign-in for the box it came from, and a restored box starts with a new one (every operator
/// sign-in made before the restore ends).
let operatorKeySetting = "operator_key"

/// The signing secret already in the data directory, or nil: for commands that must not make one
/// (`tally export` derives the same participant pseudonyms as the server).
public func storedApplianceSecret(_ settings: some SettingsStore, key: String = "secret") throws -> [UInt8]? {
    guard let hex = try settings.setting(key), hex.utf8.count == 64 else { return nil }
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
        bytes.append(byte)
        index = next
    }
    return bytes.count == 32 ? bytes : nil
}
