import Foundation
import Hummingbird
import ServiceLifecycle
import Synchronization
import TallyCluster
import TallyDiscovery
import TallyDomain
import TallyEventLog
import TallyRealtime

/// The operator's console: a sampler (a service of the application) that reads the server's
/// own instruments every two seconds and keeps fifteen minutes of history, and the snapshot
/// `GET /api/v1/operator/status` answers and streams.
///
/// Numbers come from where the rest of the server keeps them — counters and the delivery-latency
/// histogram from the Prometheus registry `/metrics` serves (parsed, never counted twice), open
/// streams from the hub, sessions from the venue, the ring's reach from the log — and the console
/// only takes differences between readings. Per instance: a test's server has its own.
final class OperatorConsole: Service, Sendable {
    /// What the console reads.
    struct Sources: Sendable {
        let venue: Venue
        let hub: EventHub
        let log: any ConsoleLog
        let metrics: ServerMetrics
        let configuration: TallyConfiguration
        let publicURL: PublicURL
        let advertising: AdvertisingStatus
    }

    let sources: Sources
    /// Between readings; each one also wakes the open console streams (their heartbeat).
    let tick: Duration
    /// A history point every this many ticks (2 s × 5 = one every 10 s).
    let ticksPerPoint: Int
    /// History points kept (90 × 10 s = 15 minutes).
    static let historyLength = 90
    private let startedAt: ContinuousClock.Instant
    private let startedWall: Date
    private let state: Mutex<State>
    /// The snapshot of the latest tick, built once for every stream watching: each stream only
    /// swaps in its own join URL. Without it, each open console would dump and parse the
    /// registry and walk the hub's streams under its lock on every tick.
    private let latest = Mutex<(tick: Int, snapshot: OperatorSnapshot)?>(nil)

    private struct State {
        /// Readings of the last 70 seconds, oldest first.
        var recent: [Reading] = []
        var history: [HistoryPoint] = []
        var ticks = 0
        var lastJump: (seconds: TimeInterval, at: Date, seen: ContinuousClock.Instant)?
        /// Console streams waiting for the next tick.
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter = 0
        /// Shutting down: streams end.
        var closed = false
    }

    /// One reading of everything that is counted.
    struct Reading: Sendable {
        let at: ContinuousClock.Instant
        let wall: Date
        let metrics: MetricsReading
        /// Ballots accepted per session since start.
        let ballots: [SessionID: Int]
    }

    init(sources: Sources, tick: Duration = .seconds(2), ticksPerPoint: Int = 5) {
        self.sources = sources
        self.tick = tick
        self.ticksPerPoint = ticksPerPoint
        self.startedAt = .now
        self.startedWall = Date()
        self.state = Mutex(State())
    }

    // MARK: The sampler

    func run() async {
        await withGracefulShutdownHandler {
            // Ends (with a CancellationError, the normal way out) at shutdown.
            try? await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    self.sample()
                    try await Task.sleep(for: self.tick)
                }
            }
        } onGracefulShutdown: {
            self.close()
        }
        close()
    }

    /// Reads everything once now, keeps it, adds a history point every `ticksPerPoint` readings,
    /// and wakes the console streams.
    func sample(at now: ContinuousClock.Instant = .now, wall: Date = Date()) {
        let reading = read(at: now, wall: wall)
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            if let previous = state.recent.last,
                let jump = ConsoleWarnings.clockJump(
                    wallElapsed: wall.timeIntervalSince(previous.wall), monotonicElapsed: seconds(previous.at.duration(to: now)))
            {
                state.lastJump = (jump, wall, now)
            }
            state.recent.append(reading)
            state.recent.removeAll { $0.at.duration(to: now) > .seconds(70) }
            state.ticks += 1
            if state.ticks % ticksPerPoint == 0 || state.history.isEmpty {
                // Against the reading one interval back (the newest at least ~9 of its 10 s old).
                let since = state.recent.last { $0.at.duration(to: now) >= tick * (ticksPerPoint * 2 - 1) / 2 } ?? state.recent.first!
                state.history.append(point(now: reading, since: since))
                if state.history.count > Self.historyLength { state.history.removeFirst(state.history.count - Self.historyLength) }
            }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// Waits for the next reading: true then, false once the server shuts down (or the caller's
    /// task is cancelled).
    func nextTick() async -> Bool {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let closed = state.withLock { state in
                    if state.closed || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if closed { continuation.resume(returning: false) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
        }
    }

    /// Ends every console stream (graceful shutdown): the server can drain at once.
    func close() {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.closed = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    private func read(at now: ContinuousClock.Instant, wall: Date) -> Reading {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8192)
        sources.metrics.registry.emit(into: &bytes)
        let ballots = Dictionary(uniqueKeysWithValues: sources.venue.allSessions().map { ($0.id, $0.ballotsAccepted) })
        return Reading(at: now, wall: wall, metrics: MetricsReading(text: String(decoding: bytes, as: UTF8.self)), ballots: ballots)
    }

    private func point(now: Reading, since: Reading) -> HistoryPoint {
        let window = seconds(since.at.duration(to: now.at))
        let latency = Histograms.window(now: now.metrics.histogram(Names.latency), then: since.metrics.histogram(Names.latency))
        return HistoryPoint(
            at: EventTime.format(Int64(now.wall.timeIntervalSince1970 * 1000)),
            connections: Int(now.metrics.sum(Names.connections)),
            streams: Int(now.metrics.sum(Names.streams)),
            latencyP99Ms: Histograms.quantile(0.99, of: latency).map(milliseconds),
            eventsPerSecond: rate(now.metrics.sum(Names.events) - since.metrics.sum(Names.events), over: window))
    }

    /// The metric names the console reads (those `ServerMetrics` and `RealtimeMetrics` register).
    enum Names {
        static let connections = "tally_connections_open"
        static let refused = "tally_connections_refused_total"
        static let streams = "tally_streams_open"
        static let events = "tally_events_published_total"
        static let slowConsumers = "tally_slow_consumer_disconnects_total"
        static let rateLimited = "tally_http_rate_limited_total"
        static let votes = "tally_votes_accepted_total"
        static let latency = RealtimeMetrics.deliveryLatencyLabel
    }

    // MARK: The snapshot

    /// Everything the console shows, as of now. `request` gives the join URL the way the other
    /// pages do (the address the console was opened with, or `public-url`).
    /// The current tick's snapshot for a stream, shared by every stream at that tick.
    func tickSnapshot(for request: Request) -> OperatorSnapshot {
        let tick = state.withLock { $0.ticks }
        if let cached = latest.withLock({ $0 }), cached.tick == tick {
            var snapshot = cached.snapshot
            snapshot.box.joinUrl = sources.publicURL.base(for: request) + "/"
            return snapshot
        }
        let fresh = snapshot(for: request)
        latest.withLock { $0 = (tick, fresh) }
        return fresh
    }

    func snapshot(for request: Request, at now: ContinuousClock.Instant = .now, wall: Date = Date()) -> OperatorSnapshot {
        let current = read(at: now, wall: wall)
        let (recent, history, lastJump) = state.withLock { ($0.recent, $0.history, $0.lastJump) }
        // Rates over the last ~10 s, counters and latency over the last minute: against the
        // newest reading at least that old (or, early on, the oldest there is).
        func baseline(_ age: Duration) -> Reading? {
            recent.last { $0.at.duration(to: now) >= age }
                ?? recent.first.flatMap { $0.at.duration(to: now) >= .seconds(1) ? $0 : nil }
        }
        let rateBase = baseline(.seconds(10))
        let minuteBase = baseline(.seconds(60))
        let rateWindow = rateBase.map { seconds($0.at.duration(to: now)) } ?? 0
        let minuteWindow = minuteBase.map { seconds($0.at.duration(to: now)) } ?? 0
        let m = current.metrics

        func tally(_ name: String) -> OperatorSnapshot.Tally {
            OperatorSnapshot.Tally(
                total: Int(m.sum(name)), lastMinute: minuteBase.map { Int(max(0, m.sum(name) - $0.metrics.sum(name))) })
        }
        let latency = Histograms.window(
            now: m.histogram(Names.latency), then: minuteBase?.metrics.histogram(Names.latency) ?? [])

        let reach = sources.log.reach()
        let oldestAge = reach.oldestTimestamp.map { max(0, wall.timeIntervalSince($0)) }
        let disk = ApplianceProbe.disk(at: sources.configuration.dataDirectory)
        let openFiles = ApplianceProbe.openFilesLimit()
        let advertising = sources.advertising.current
        let configuration = sources.configuration

        let streams = sources.hub.openStreams()
        let sessions = sessionRows(current: current, base: rateBase, window: rateWindow, streams: streams)

        let facts = ApplianceFacts(
            now: wall, builtAt: ApplianceProbe.builtAt, newestEvent: sources.log.newestTimestamp,
            clockJump: lastJump.flatMap { $0.seen.duration(to: now) < .seconds(15 * 60) ? ($0.seconds, $0.at) : nil },
            diskFreeBytes: disk?.free, diskTotalBytes: disk?.total,
            ringLimitedByCapacity: reach.limitedByCapacity, oldestEventAge: oldestAge, retention: configuration.retention,
            advertising: advertising, openFilesLimit: openFiles, maxConnections: configuration.connections.maxConnections)

        let durable = sources.log.durableSequence
        let base = sources.publicURL.base(for: request)
        return OperatorSnapshot(
            at: EventTime.format(Int64(wall.timeIntervalSince1970 * 1000)),
            box: .init(
                version: TallyConfiguration.version,
                uptimeSeconds: Int(seconds(startedAt.duration(to: now))),
                startedAt: EventTime.format(Int64(startedWall.timeIntervalSince1970 * 1000)),
                addresses: ApplianceProbe.addresses(),
                joinUrl: base + "/",
                mdns: .init(
                    name: advertising.name, state: advertising.phase.rawValue, advertised: advertising.phase == .advertised,
                    reason: advertising.phase == .advertised ? nil : advertising.reason),
                network: configuration.network.rawValue,
                tls: configuration.usesTLS),
            sessions: sessions.rows,
            sessionsActive: sessions.active,
            sessionsTotal: sessions.total,
            delivery: .init(
                windowSeconds: Int(minuteWindow.rounded()),
                rateWindowSeconds: Int(rateWindow.rounded()),
                latencyMs: .init(
                    p50: Histograms.quantile(0.5, of: latency).map(milliseconds),
                    p99: Histograms.quantile(0.99, of: latency).map(milliseconds),
                    deliveries: Int(latency.last?.count ?? 0)),
                eventsPerSecond: rate(m.sum(Names.events) - (rateBase?.metrics.sum(Names.events) ?? m.sum(Names.events)), over: rateWindow),
                votesPerSecond: rate(m.sum(Names.votes) - (rateBase?.metrics.sum(Names.votes) ?? m.sum(Names.votes)), over: rateWindow),
                connections: .init(
                    open: Int(m.sum(Names.connections)), max: configuration.connections.maxConnections,
                    webSocket: Int(m.sum(Names.streams, matching: ["transport": Transport.webSocket.rawValue])),
                    sse: Int(m.sum(Names.streams, matching: ["transport": Transport.sse.rawValue])),
                    openFilesLimit: openFiles),
                slowConsumerDisconnects: tally(Names.slowConsumers),
                refusedConnections: tally(Names.refused),
                rateLimited: tally(Names.rateLimited)),
            storage: .init(
                dataDirectory: URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.path,
                freeBytes: disk?.free, totalBytes: disk?.total,
                durability: configuration.durability.rawValue,
                ring: .init(
                    sizeBytes: sources.log.capacity, retainedEvents: reach.retainedEvents,
                    oldestEventAgeSeconds: oldestAge.map { Int($0) }, retentionSeconds: Int(configuration.retention),
                    limitedByCapacity: reach.limitedByCapacity),
                projectionLagEvents: Int(durable - min(durable, sources.log.projectedSequence))),
            warnings: ConsoleWarnings.check(facts),
            history: .init(intervalSeconds: Int(seconds(tick * ticksPerPoint)), points: history))
    }

    /// Sessions still running (newest first, at most 50), each with its streams by transport and
    /// votes per second over the rate window.
    private func sessionRows(
        current: Reading, base: Reading?, window: Double, streams: [SessionID: [Transport: Int]]
    ) -> (rows: [OperatorSnapshot.SessionRow], active: Int, total: Int) {
        let all = sources.venue.allSessions()
        let active = all.reversed().compactMap { session -> OperatorSnapshot.SessionRow? in
            session.read { state, _ in
                guard state.lifecycle == .active else { return nil }
                let open = state.openPollId.flatMap { state.poll($0) }
                let accepted = current.ballots[state.id] ?? 0
                return OperatorSnapshot.SessionRow(
                    sessionId: state.id, title: state.title, joinCode: state.joinCode.value,
                    participants: state.participantCount,
                    streams: .init(webSocket: streams[state.id]?[.webSocket] ?? 0, sse: streams[state.id]?[.sse] ?? 0),
                    openPoll: open.map { .init(pollId: $0.id, question: $0.question) },
                    votesPerSecond: rate(Double(accepted - (base?.ballots[state.id] ?? accepted)), over: window))
            }
        }
        return (Array(active.prefix(50)), active.count, all.count)
    }
}

/// The console's JSON (`GET /api/v1/operator/status`, and each `operator.status` event).
struct OperatorSnapshot: Encodable, Sendable {
    let at: String
    var box: Box
    let sessions: [SessionRow]
    let sessionsActive: Int
    let sessionsTotal: Int
    let delivery: Delivery
    let storage: Storage
    let warnings: [ConsoleWarning]
    let history: History

    struct Box: Encodable, Sendable {
        let version: String
        let uptimeSeconds: Int
        let startedAt: String
        let addresses: [String]
        var joinUrl: String
        let mdns: MDNS
        let network: String
        let tls: Bool
    }

    struct MDNS: Encodable, Sendable {
        let name: String
        /// disabled, starting, advertised, unreachable, failed, withdrawn
        let state: String
        let advertised: Bool
        let reason: String?
    }

    struct SessionRow: Encodable, Sendable {
        let sessionId: String
        let title: String
        let joinCode: String
        let participants: Int
        let streams: Streams
        let openPoll: OpenPoll?
        let votesPerSecond: Double

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(sessionId, forKey: .sessionId)
            try c.encode(title, forKey: .title)
            try c.encode(joinCode, forKey: .joinCode)
            try c.encode(participants, forKey: .participants)
            try c.encode(streams, forKey: .streams)
            try c.encode(openPoll, forKey: .openPoll)  // null when no poll is open
            try c.encode(votesPerSecond, forKey: .votesPerSecond)
        }
        enum Key: String, CodingKey { case sessionId, title, joinCode, participants, streams, openPoll, votesPerSecond }
    }

    struct Streams: Encodable, Sendable {
        let webSocket: Int
        let sse: Int
        enum CodingKeys: String, CodingKey {
            case webSocket = "websocket"
            case sse
        }
    }

    struct OpenPoll: Encodable, Sendable {
        let pollId: String
        let question: String
    }

    struct Delivery: Encodable, Sendable {
        /// The window of `latencyMs` and the `lastMinute` counts (60 once the server has run a minute).
        let windowSeconds: Int
        /// The window of the per-second rates (about 10 s).
        let rateWindowSeconds: Int
        let latencyMs: Latency
        let eventsPerSecond: Double
        let votesPerSecond: Double
        let connections: Connections
        let slowConsumerDisconnects: Tally
        let refusedConnections: Tally
        let rateLimited: Tally
    }

    struct Latency: Encodable, Sendable {
        let p50: Double?
        let p99: Double?
        let deliveries: Int

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(p50, forKey: .p50)  // null when nothing was delivered in the window
            try c.encode(p99, forKey: .p99)
            try c.encode(deliveries, forKey: .deliveries)
        }
        enum Key: String, CodingKey { case p50, p99, deliveries }
    }

    struct Connections: Encodable, Sendable {
        /// TCP connections open now (HTTP, SSE and WebSocket).
        let open: Int
        let max: Int
        /// Open `/events` streams by transport.
        let webSocket: Int
        let sse: Int
        let openFilesLimit: Int?
        enum CodingKeys: String, CodingKey {
            case open, max, sse, openFilesLimit
            case webSocket = "websocket"
        }
    }

    /// A counter: since the server started, and over the last minute (null until a reading exists).
    struct Tally: Encodable, Sendable {
        let total: Int
        let lastMinute: Int?

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(total, forKey: .total)
            try c.encode(lastMinute, forKey: .lastMinute)
        }
        enum Key: String, CodingKey { case total, lastMinute }
    }

    struct Storage: Encodable, Sendable {
        let dataDirectory: String
        let freeBytes: Int64?
        let totalBytes: Int64?
        let durability: String
        let ring: Ring
        /// Events durable in the ring but not yet in SQLite.
        let projectionLagEvents: Int
    }

    struct Ring: Encodable, Sendable {
        let sizeBytes: Int
        let retainedEvents: Int
        /// How far back replay reaches (null: nothing to replay yet).
        let oldestEventAgeSeconds: Int?
        let retentionSeconds: Int
        let limitedByCapacity: Bool

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(sizeBytes, forKey: .sizeBytes)
            try c.encode(retainedEvents, forKey: .retainedEvents)
            try c.encode(oldestEventAgeSeconds, forKey: .oldestEventAgeSeconds)
            try c.encode(retentionSeconds, forKey: .retentionSeconds)
            try c.encode(limitedByCapacity, forKey: .limitedByCapacity)
        }
        enum Key: String, CodingKey { case sizeBytes, retainedEvents, oldestEventAgeSeconds, retentionSeconds, limitedByCapacity }
    }

    struct History: Encodable, Sendable {
        let intervalSeconds: Int
        /// Oldest first, at most 90 (15 minutes).
        let points: [HistoryPoint]
    }
}

/// One point of the sparklines.
struct HistoryPoint: Encodable, Sendable {
    let at: String
    let connections: Int
    let streams: Int
    /// Null when nothing was delivered in the interval.
    let latencyP99Ms: Double?
    let eventsPerSecond: Double

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(at, forKey: .at)
        try c.encode(connections, forKey: .connections)
        try c.encode(streams, forKey: .streams)
        try c.encode(latencyP99Ms, forKey: .latencyP99Ms)
        try c.encode(eventsPerSecond, forKey: .eventsPerSecond)
    }
    enum Key: String, CodingKey { case at, connections, streams, latencyP99Ms, eventsPerSecond }
}

private func milliseconds(_ secondsValue: Double) -> Double {
    (secondsValue * 1000 * 100).rounded() / 100
}

/// Per second, to two decimals; 0 over an empty window.
private func rate(_ count: Double, over window: Double) -> Double {
    window > 0 ? (max(0, count) / window * 100).rounded() / 100 : 0
}

/// What the console shows of the event log: the ring's size and the projection's lag on one
/// box; in a cluster, no ring (0) and no lag (everything folded is in PostgreSQL).
protocol ConsoleLog: EventLog {
    var capacity: Int { get }
    var projectedSequence: UInt64 { get }
    var newestTimestamp: Date? { get }
}

extension RingEventLog: ConsoleLog {}

extension ClusterLog: ConsoleLog {
    var capacity: Int { 0 }
    var projectedSequence: UInt64 { durableSequence }
}
