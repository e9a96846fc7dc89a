import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle
import TallyDomain
import TallyEventLog
import UnixSignals

/// The whole appliance, ready to run: the HTTP/WebSocket server and the long-lived parts
/// beside it, in one service group.
public struct TallyApplication: Sendable {
    let application: Application<RouterResponder<TallyRequestContext>>
    let streams: StreamKeeper
    let configuration: TallyConfiguration
    let logger: Logger
    /// "METHOD /path" of every HTTP route (checked against openapi.yaml by the tests).
    let routes: [String]

    /// Runs until SIGTERM/SIGINT (or cancellation). Shutdown ends every open stream first, then
    /// lets the server drain, within `configuration.shutdownGrace`.
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        var group = ServiceGroupConfiguration(
            services: [
                .init(service: application),
                // Last in the group, so first to hear about shutdown: streams end before the
                // server waits for connections to finish.
                .init(service: streams),
            ],
            gracefulShutdownSignals: gracefulShutdownSignals,
            logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownGrace
        try await ServiceGroup(configuration: group).run()
        logger.info("stopped")
    }
}

/// Keeps the streams alive (SSE heartbeats) and ends them all on graceful shutdown.
struct StreamKeeper: Service {
    let hub: EventHub
    let interval: Duration

    func run() async {
        await withGracefulShutdownHandler {
            // Ends (with a CancellationError, which is the normal way out) at shutdown.
            try? await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    hub.heartbeat()
                }
            }
        } onGracefulShutdown: {
            hub.endAll()
        }
    }
}

/// Opens the data directory, recovers every session from the event log, and builds the server.
public func buildApplication(_ configuration: TallyConfiguration, logger: Logger) throws -> TallyApplication {
    let dataDirectory = URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL
    do {
        try FileManager.default.createDirectory(
            at: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    } catch {
        throw StartupError("cannot create the data directory \(dataDirectory.path): \(error.localizedDescription)")
    }
    let databasePath = dataDirectory.appendingPathComponent("tally.sqlite").path
    let log: SQLiteEventLog
    do {
        log = try SQLiteEventLog(path: databasePath, durability: configuration.durability, logger: logger)
    } catch {
        throw StartupError("cannot open the event log at \(databasePath): \(error)")
    }

    let secret = try applianceSecret(log)
    let access = Access(credentials: Credentials(secret: secret))
    let password = try OperatorPassword(configured: configuration.operatorPassword, settings: log)

    let clock = ContinuousClock()
    let started = clock.now
    let events = try log.allEvents()
    let venue = Venue(
        log: log, limits: configuration.limits, maxSessions: configuration.maxSessions,
        resultsInterval: configuration.resultsInterval)
    venue.recover(from: events)
    logger.info(
        "event log recovered",
        metadata: [
            "path": "\(databasePath)", "events": "\(events.count)", "sessions": "\(venue.sessionCount)",
            "epoch": "\(log.epoch)", "durability": "\(configuration.durability.rawValue)",
            "ms": "\(started.duration(to: clock.now).components.attoseconds / 1_000_000_000_000_000 + started.duration(to: clock.now).components.seconds * 1000)",
        ])

    let hub = EventHub(epoch: log.epoch, publishedThrough: log.durableSequence, queueLimit: configuration.streamQueueLimit)
    log.onDurable { batch in hub.publish(batch) }

    let router = Router(context: TallyRequestContext.self)
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: ProblemMiddleware())
    APIController(venue: venue, hub: hub, access: access, password: password, log: log).addRoutes(to: router)
    let events_ = EventsController(venue: venue, hub: hub, access: access, log: log, logger: logger)
    events_.addRoutes(to: router)
    HealthController(venue: venue, hub: hub, log: log).addRoutes(to: router)

    let webSocketRouter = Router(context: TallyRequestContext.self)
    events_.addWebSocketRoutes(to: webSocketRouter)

    if !password.isSet {
        logger.warning("no operator password is set: set one with POST /api/v1/auth/setup or --operator-password")
    }
    let host = configuration.host
    let application = Application(
        router: router,
        server: .http1WebSocketUpgrade(
            webSocketRouter: webSocketRouter,
            configuration: .init(
                ws: .init(
                    // Clients send nothing on /events; keep inbound frames tiny.
                    maxFrameSize: 4096,
                    autoPing: .enabled(timePeriod: configuration.pingInterval)))),
        configuration: .init(address: .hostname(host, port: configuration.port), serverName: "Tally"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            let shownHost = host == "0.0.0.0" || host == "::" ? "localhost" : host
            logger.info("listening", metadata: ["url": "http://\(shownHost):\(port)/", "bind": "\(host):\(port)"])
        },
        logger: logger)
    return TallyApplication(
        application: application, streams: StreamKeeper(hub: hub, interval: configuration.sseHeartbeat),
        configuration: configuration, logger: logger,
        routes: router.routes.map { "\($0.method) /\($0.path.description.drop(while: { $0 == "/" }))" })
}

/// A start-up failure with a message for the person at the console.
public struct StartupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The appliance's signing secret: made once, kept in the data directory's database.
private func applianceSecret(_ settings: some SettingsStore) throws -> [UInt8] {
    if let hex = try settings.setting("secret"), hex.utf8.count == 64 {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { break }
            bytes.append(byte)
            index = next
        }
        if bytes.count == 32 { return bytes }
    }
    var rng = SystemRandomNumberGenerator()
    let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    try settings.setSetting("secret", to: bytes.map { String(format: "%02x", $0) }.joined())
    return bytes
}
