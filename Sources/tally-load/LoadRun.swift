import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// One benchmark run against one server.
final class LoadRun: @unchecked Sendable {
    let plan: Plan
    let server: ServerUnderTest
    let loop: any EventLoop
    let ramp: Double
    let duration: Double
    let password: String
    let collector = Collector()
    private let connector: Connector
    private var rooms: [Room] = []
    /// How late each publication left (µs after its scheduled time): the load box's own delay.
    let lateness = Mutex<[UInt32]>([])
    /// The steady scenarios' result, for a side-by-side table.
    private(set) var summary: Summary?
    /// For a group of processes (`--pid a=1,b=2`): the last measured window's CPU per label,
    /// and its length, for the per-group report.
    private var breakdown: CPUBreakdown?
    private var measuredSeconds = 0.0

    final class Room: Sendable {
        let id: String
        let code: String
        let presenter: String
        /// Publications so far (the warm-up one is index 0).
        let published = Atomic<Int>(0)

        init(id: String, code: String, presenter: String) {
            self.id = id
            self.code = code
            self.presenter = presenter
        }
    }

    init(plan: Plan, server: ServerUnderTest, group: MultiThreadedEventLoopGroup, ramp: Double, duration: Double, password: String) {
        self.plan = plan
        self.server = server
        self.loop = group.next()
        self.ramp = ramp
        self.duration = duration
        self.password = password
        self.connector = Connector(group: loop, host: "127.0.0.1", port: server.port, collector: collector)
    }

    func execute() throws {
        if server.isNchan {
            // Channels "room0"… exist once subscribed to; no sign-in, no join, no warm-up
            // publication (indexes start at 1 as they do after Tally's publication 0).
            rooms = (0..<plan.sessions).map { Room(id: "room\($0)", code: "", presenter: "") }
            print(
                "\(server.name): scenario \(plan.name): \(plan.subscribers) subscribers over \(plan.sessions) channel(s), \(plan.rate) messages/s, \(duration) s"
            )
            switch plan.name {
            case "idle": try idle()
            default: try steady()
            }
            return
        }
        let http = BlockingHTTP(host: "127.0.0.1", port: server.port)
        let (status, body) = try http.request("POST", "/api/v1/auth/login", json: #"{"password":"\#(password)"}"#)
        guard status == 200, let operatorToken = jsonString(body, "token") else { throw LoadError("operator sign-in failed (\(status))") }
        let sessionCount = plan.name == "storm" ? 2 : plan.sessions
        for index in 0..<sessionCount {
            let (status, body) = try http.request("POST", "/api/v1/sessions", json: #"{"title":"Load \#(index)"}"#, token: operatorToken)
            guard status == 201, let id = jsonString(body, "sessionId"), let code = jsonString(body, "joinCode"),
                let presenter = jsonString(body, "presenterToken")
            else { throw LoadError("could not create a session (\(status))") }
            rooms.append(Room(id: id, code: code, presenter: presenter))
            try http.awaitVisible("/api/v1/sessions/\(id)", token: operatorToken)
            // Publication 0: from here on every publication closes the previous poll.
            try publish(http, rooms[index], index: 0, scheduled: now())
        }
        print(
            "\(server.name): scenario \(plan.name): \(plan.subscribers) subscribers over \(plan.sessions) session(s), \(plan.rate) events/s, \(duration) s"
        )
        switch plan.name {
        case "idle": try idle()
        case "storm": try storm()
        case "slow": try slow()
        default: try steady()
        }
    }

    // MARK: scenarios

    private func steady() throws {
        let trackers = try subscribe(plan.subscribers, over: Array(0..<plan.sessions))
        let rssBefore = server.rssBytes
        let (cpu, delivered, _) = try measure {
            try publishAll(rooms: Array(0..<plan.sessions), eventsPerSecond: plan.rate, seconds: duration)
        }
        try drain(trackers)
        report(trackers, cpuSeconds: cpu, framesDelivered: delivered, rssBefore: rssBefore)
    }

    private func idle() throws {
        let rssBefore = server.rssBytes
        var rssJoined = rssBefore
        // Participants join first (their state is the session's, not the connection's); the
        // per-connection figure is the growth while the WebSockets open and sit idle.
        let trackers = try subscribe(plan.subscribers, over: [0], beforeConnecting: { rssJoined = self.server.rssBytes })
        sleep(2)
        let rssAfter = server.rssBytes
        let up = try onLoop { trackers.filter(\.connected).count }
        let perConnection = Double(rssAfter - rssJoined) / Double(max(up, 1)) / 1e3
        let withJoin = Double(rssAfter - rssBefore) / Double(max(up, 1)) / 1e3
        print("connections up: \(up) of \(trackers.count)")
        print(
            String(
                format: "server RSS (anonymous): %.1f MB before, %.1f MB after %@, %.1f MB with %d idle WebSocket connections",
                Double(rssBefore) / 1e6, Double(rssJoined) / 1e6, server.isNchan ? "(no joins on nchan)" : "\(trackers.count) joins",
                Double(rssAfter) / 1e6, up))
        print(
            String(
                format: "per idle WebSocket: %.1f KB (target ≤ 12 KB: %@); %.1f KB counting the participant's join", perConnection,
                perConnection <= 12 ? "met" : "missed", withJoin))
        if server.isNchan {
            print(String(format: "nginx shared memory resident (summed over processes): %.1f MB", Double(server.rssShmemBytes) / 1e6))
        }
        print(
            String(
                format: "| idle, %@ | %d/%d up | %.0f MB anon RSS | %.1f KB per WebSocket (%.1f KB with its join) | target ≤ 12 KB: %@ |",
                server.name, up, trackers.count, Double(rssAfter) / 1e6, perConnection, withJoin, perConnection <= 12 ? "met" : "missed"))
    }

    private func storm() throws {
        // Room 0: the crowd that drops and comes back. Room 1: bystanders who stay connected
        // and keep receiving live events during the storm; their latency is measured.
        let crowd = try subscribe(plan.subscribers, over: [0])
        let bystanderCollector = Collector()
        let bystanders = try subscribe(200, over: [1], collector: bystanderCollector)
        try publishAll(rooms: [0], eventsPerSecond: 30, seconds: 1)
        try drain(crowd)
        try onLoop { for tracker in crowd { tracker.channel?.close(promise: nil) } }
        for _ in 0..<100 where try onLoop({ crowd.contains(where: \.connected) }) { usleep(50_000) }
        // 500 events missed: 250 publications (each is poll.closed + poll.opened).
        let http = BlockingHTTP(host: "127.0.0.1", port: server.port)
        for _ in 0..<250 {
            let index = rooms[0].published.add(1, ordering: .relaxed).newValue
            try publish(http, rooms[0], index: index, scheduled: now())
        }
        let target = rooms[0].published.load(ordering: .relaxed)
        bystanderCollector.recording = true
        try onLoop { bystanderCollector.reset() }
        let cpuBefore = server.cpuSeconds
        let live = Thread { try? self.publishAll(rooms: [1], eventsPerSecond: 30, seconds: 4) }
        live.start()
        // Everyone comes back at once, each from its own last eventId.
        let started = now()
        let futures: [EventLoopFuture<any Channel>] = try onLoop {
            crowd.map { tracker in
                tracker.catchUpTarget = target
                tracker.catchUpStarted = now()
                tracker.caughtUpAfter = nil
                let from = tracker.lastEventId.map { "&fromEventId=\($0)" } ?? ""
                return self.connector.connect(tracker, path: self.path(room: 0, tracker: tracker) + from)
            }
        }
        _ = futures
        var caughtUp = 0
        for _ in 0..<600 {
            caughtUp = try onLoop { crowd.filter { $0.caughtUpAfter != nil }.count }
            if caughtUp == crowd.count { break }
            usleep(50_000)
        }
        let stormSeconds = Double(now() - started) / 1e9
        while !live.isFinished { usleep(50_000) }
        try drain(bystanders)
        let cpu = server.cpuSeconds - cpuBefore
        let times = try onLoop { crowd.compactMap(\.caughtUpAfter).sorted() }
        let (gaps, duplicates, outOfOrder) = try integrity(crowd)
        let bystanderLatency = try onLoop { bystanderCollector.latenciesMicros.sorted() }
        print(
            "reconnect storm: \(caughtUp)/\(crowd.count) caught up on 500 missed events; the last after \(String(format: "%.2f", stormSeconds)) s"
        )
        if !times.isEmpty {
            print(
                String(
                    format: "catch-up time per client: p50 %.0f ms, p99 %.0f ms, max %.0f ms", ms(times, 0.5), ms(times, 0.99),
                    Double(times.last!) / 1e6))
        }
        print("crowd after the storm: gaps \(gaps), duplicates \(duplicates), out-of-order \(outOfOrder)")
        print(
            String(
                format: "bystanders (200, live 30 ev/s during the storm): p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                pct(bystanderLatency, 0.5), pct(bystanderLatency, 0.99), Double(bystanderLatency.last ?? 0) / 1e3))
        print(String(format: "server CPU during the storm: %.2f s", cpu))
        let allIn = caughtUp == crowd.count && stormSeconds <= 1.0
        print("target (all 2,000 caught up ≤ 1 s): \(allIn ? "met" : "missed")")
        print(
            String(
                format:
                    "| storm (2,000 × 500 missed) | %d/%d caught up | %d / %d / %d | catch-up p50 %.0f ms, p99 %.0f ms, max %.0f ms | bystanders p99 %.1f ms | %.2f s CPU |",
                caughtUp, crowd.count, gaps, duplicates, outOfOrder, times.isEmpty ? 0 : ms(times, 0.5),
                times.isEmpty ? 0 : ms(times, 0.99),
                Double(times.last ?? 0) / 1e6, pct(bystanderLatency, 0.99), cpu))
    }

    private func slow() throws {
        let trackers = try subscribe(plan.subscribers, over: [0])
        let half = max(duration / 2, 3)
        try publishAll(rooms: [0], eventsPerSecond: plan.rate, seconds: 1)
        try drain(trackers)
        try onLoop { self.collector.reset() }
        try publishAll(rooms: [0], eventsPerSecond: plan.rate, seconds: half)
        try drain(trackers)
        let alone = try onLoop { self.collector.latenciesMicros.sorted() }
        // One client that connects and never reads again.
        let stalled = Tracker(session: 0)
        let stalledChannel = try onLoop { self.connector.connect(stalled, path: self.path(room: 0, tracker: stalled), stalled: true) }
            .wait()
        try onLoop { self.collector.reset() }
        try publishAll(rooms: [0], eventsPerSecond: plan.rate, seconds: half)
        try drain(trackers)
        let withStalled = try onLoop { self.collector.latenciesMicros.sorted() }
        let (gaps, duplicates, outOfOrder) = try integrity(trackers)
        print(
            String(
                format: "others' latency alone: p50 %.1f ms, p99 %.1f ms; with a stalled client: p50 %.1f ms, p99 %.1f ms (+%.1f ms)",
                pct(alone, 0.5), pct(alone, 0.99), pct(withStalled, 0.5), pct(withStalled, 0.99), pct(withStalled, 0.99) - pct(alone, 0.99))
        )
        print("others: gaps \(gaps), duplicates \(duplicates), out-of-order \(outOfOrder)")
        print(
            String(
                format: "| slow consumer (1 stalled + %d) | p99 %.1f → %.1f ms | %d / %d / %d |",
                trackers.count, pct(alone, 0.99), pct(withStalled, 0.99), gaps, duplicates, outOfOrder))
        stalledChannel.close(promise: nil)
    }

    // MARK: building blocks

    private func path(room: Int, tracker: Tracker) -> String {
        if server.isNchan { return "/sub?id=\(rooms[room].id)" }
        return "/events?sessionId=\(rooms[room].id)&token=\(tracker.token ?? rooms[room].presenter)"
    }

    /// Joins `count` participants spread over `roomIndexes` (8 joins in flight, so group commit
    /// applies), then opens their WebSockets at the ramp rate and waits until all are up.
    private func subscribe(
        _ count: Int, over roomIndexes: [Int], collector: Collector? = nil, beforeConnecting: () -> Void = {}
    ) throws -> [Tracker] {
        let trackers = (0..<count).map { Tracker(session: roomIndexes[$0 % roomIndexes.count]) }
        if !server.isNchan { try join(trackers) }
        beforeConnecting()
        let chosen = collector.map { Connector(group: loop, host: "127.0.0.1", port: server.port, collector: $0) } ?? connector
        let connectStart = now()
        let interval = 1.0 / ramp
        for (i, tracker) in trackers.enumerated() {
            let due = connectStart + UInt64(Double(i) * interval * 1e9)
            let wait = Int64(due) - Int64(now())
            if wait > 0 { usleep(UInt32(wait / 1000)) }
            let path = self.path(room: tracker.session, tracker: tracker)
            _ = try onLoop { chosen.connect(tracker, path: path) }
        }
        var up = 0
        for _ in 0..<600 {
            up = try onLoop { trackers.filter(\.connected).count }
            if up == count { break }
            usleep(50_000)
        }
        let failed = try onLoop { trackers.reduce(0) { $0 + $1.upgradeFailures } }
        print(String(format: "connected %d/%d WebSockets in %.1f s (%d refused)", up, count, Double(now() - connectStart) / 1e9, failed))
        return trackers
    }

    /// Joins a participant per tracker (8 joins in flight, so group commit applies).
    private func join(_ trackers: [Tracker]) throws {
        let count = trackers.count
        let joined = Mutex<[Int: String]>([:])
        let port = server.port
        let codes = trackers.map { rooms[$0.session].code }
        let failures = Atomic<Int>(0)
        let workers = 8
        let threads = (0..<workers).map { worker in
            Thread {
                let http = BlockingHTTP(host: "127.0.0.1", port: port)
                for i in stride(from: worker, to: count, by: workers) {
                    guard let (status, body) = try? http.request("POST", "/api/v1/join", json: #"{"joinCode":"\#(codes[i])"}"#),
                        status == 201, let token = jsonString(body, "participantToken")
                    else {
                        failures.add(1, ordering: .relaxed)
                        continue
                    }
                    joined.withLock { $0[i] = token }
                }
            }
        }
        let joinStart = now()
        threads.forEach { $0.start() }
        while threads.contains(where: { !$0.isFinished }) { usleep(20_000) }
        if failures.load(ordering: .relaxed) > 0 { throw LoadError("\(failures.load(ordering: .relaxed)) joins failed") }
        let tokensByIndex = joined.withLock { $0 }
        for (i, tracker) in trackers.enumerated() { tracker.token = tokensByIndex[i] }
        print(String(format: "joined %d participants in %.1f s", count, Double(now() - joinStart) / 1e9))
    }

    private func publish(_ http: BlockingHTTP, _ room: Room, index: Int, scheduled: UInt64) throws {
        if server.isNchan {
            // Two messages per publication, as Tally's poll.closed + poll.opened.
            let (closed, opened) = NchanPeer.messages(channel: room.id, index: index, scheduled: scheduled)
            for message in [closed, opened] {
                let (status, response) = try http.request("POST", "/pub?id=\(room.id)", json: message)
                guard (200..<300).contains(status) else {
                    throw LoadError("nchan publication refused: \(status) \(String(decoding: response, as: UTF8.self))")
                }
            }
            return
        }
        let body = #"{"question":"L\#(index):\#(scheduled)","options":["Yes","No"],"open":true}"#
        let (status, response) = try http.request("POST", "/api/v1/sessions/\(room.id)/polls", json: body, token: room.presenter)
        guard status == 201 else { throw LoadError("publication refused: \(status) \(String(decoding: response, as: UTF8.self))") }
    }

    /// Publishes to each room on its own thread, each on a fixed schedule from one start time.
    func publishAll(rooms roomIndexes: [Int], eventsPerSecond: Double, seconds: Double) throws {
        let perRoom = eventsPerSecond / 2 / Double(roomIndexes.count)  // two events per publication
        let count = Int(perRoom * seconds)
        let start = now() + 50_000_000
        let errors = Mutex<[String]>([])
        let port = server.port
        let threads = roomIndexes.map { roomIndex in
            let room = rooms[roomIndex]
            return Thread {
                let http = BlockingHTTP(host: "127.0.0.1", port: port)
                for i in 0..<count {
                    let scheduled = start + UInt64(Double(i) / perRoom * 1e9)
                    let wait = Int64(scheduled) - Int64(now())
                    if wait > 0 { usleep(UInt32(wait / 1000)) }
                    let index = room.published.add(1, ordering: .relaxed).newValue
                    let sent = now()
                    self.lateness.withLock { $0.append(UInt32(clamping: sent > scheduled ? (sent - scheduled) / 1000 : 0)) }
                    do { try self.publish(http, room, index: index, scheduled: scheduled) } catch {
                        errors.withLock { $0.append("\(error)") }
                        return
                    }
                }
            }
        }
        threads.forEach { $0.start() }
        while threads.contains(where: { !$0.isFinished }) { usleep(20_000) }
        if let first = errors.withLock({ $0.first }) { throw LoadError(first) }
    }

    /// Runs `body` and returns the server CPU it cost and the frames delivered meanwhile.
    private func measure(_ body: () throws -> Void) throws -> (Double, Int, Double) {
        try onLoop { self.collector.reset() }
        lateness.withLock { $0.removeAll() }
        let groupBefore = server.cpuByLabel
        let cpu = server.cpuSeconds
        let started = now()
        try body()
        let elapsed = Double(now() - started) / 1e9
        // Let the last events arrive before reading the meters.
        usleep(500_000)
        let spent = server.cpuSeconds - cpu
        if let group = server.group {
            breakdown = CPUBreakdown(labels: group.labels, before: groupBefore, after: server.cpuByLabel)
        }
        measuredSeconds = elapsed
        return (spent, try onLoop { self.collector.delivered }, elapsed)
    }

    /// Waits (≤ 10 s) until every subscriber has the last publication of its room.
    private func drain(_ trackers: [Tracker]) throws {
        for _ in 0..<200 {
            let targets = rooms.map { $0.published.load(ordering: .relaxed) }
            let behind = try onLoop { trackers.filter { $0.connected && $0.lastIndex < targets[$0.session] }.count }
            if behind == 0 { return }
            usleep(50_000)
        }
    }

    private func integrity(_ trackers: [Tracker]) throws -> (gaps: Int, duplicates: Int, outOfOrder: Int) {
        let totals = rooms.map { $0.published.load(ordering: .relaxed) }
        return try onLoop {
            // Subscribers joined after publication 0; they should see every later one.
            let gaps = trackers.reduce(0) { $0 + (totals[$1.session] - $1.uniqueStamped) }
            return (gaps, trackers.reduce(0) { $0 + $1.duplicates }, trackers.reduce(0) { $0 + $1.outOfOrder })
        }
    }

    private func report(_ trackers: [Tracker], cpuSeconds: Double, framesDelivered: Int, rssBefore: Int) {
        let totals = rooms.map { $0.published.load(ordering: .relaxed) }
        let (up, failed, expected, delivered, closes) = try! onLoop {
            (
                trackers.filter(\.connected).count, trackers.reduce(0) { $0 + $1.upgradeFailures },
                trackers.reduce(0) { $0 + totals[$1.session] }, trackers.reduce(0) { $0 + $1.uniqueStamped },
                trackers.flatMap(\.closeCodes)
            )
        }
        let (gaps, duplicates, outOfOrder) = try! integrity(trackers)
        let latencies = try! onLoop { self.collector.latenciesMicros.sorted() }
        let perDelivery = cpuSeconds / Double(max(framesDelivered, 1)) * 1e6
        let rss = server.rssBytes
        print("connections: \(up) up, \(failed) failed; closed by the server: \(closes.count) \(Set(closes).sorted())")
        let late = lateness.withLock { $0.sorted() }
        print(String(format: "publications left late by (load box scheduling): p50 %.1f ms, p99 %.1f ms", pct(late, 0.5), pct(late, 0.99)))
        if let histogram = serverHistogram() { print("server, publication → socket write: \(histogram)") }
        print(
            "stamped events: expected \(expected), delivered \(delivered); gaps \(gaps), duplicates \(duplicates), out-of-order \(outOfOrder)"
        )
        print(
            String(
                format: "latency (scheduled → received): p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms",
                pct(latencies, 0.5), pct(latencies, 0.95), pct(latencies, 0.99), pct(latencies, 0.999), Double(latencies.last ?? 0) / 1e3))
        if server.isNchan {
            print(
                String(
                    format:
                        "server (nginx master + workers): %.2f s CPU for %d frames delivered = %.1f µs per delivery; RSS (anonymous) %.0f MB (%.0f MB before publishing); shared memory resident %.0f MB",
                    cpuSeconds, framesDelivered, perDelivery, Double(rss) / 1e6, Double(rssBefore) / 1e6, Double(server.rssShmemBytes) / 1e6
                ))
        } else {
            print(
                String(
                    format:
                        "server: %.2f s CPU for %d frames delivered = %.1f µs per delivery; RSS (anonymous) %.0f MB (%.0f MB before publishing; %.0f MB with the ring's mapped pages)",
                    cpuSeconds, framesDelivered, perDelivery, Double(rss) / 1e6, Double(rssBefore) / 1e6, Double(server.rssTotalBytes) / 1e6
                ))
        }
        summary = Summary(
            server: server.name, scenario: "\(plan.name) (\(plan.sessions)×\(plan.subscribers / plan.sessions), \(Int(plan.rate)) ev/s)",
            up: up, connections: trackers.count, delivered: delivered, expected: expected,
            gaps: gaps, duplicates: duplicates, outOfOrder: outOfOrder,
            p50: pct(latencies, 0.5), p95: pct(latencies, 0.95), p99: pct(latencies, 0.99), p999: pct(latencies, 0.999),
            max: Double(latencies.last ?? 0) / 1e3, cpuSeconds: cpuSeconds, frames: framesDelivered, perDelivery: perDelivery,
            rssAnon: rss, rssShmem: server.isNchan ? server.rssShmemBytes : nil, lateP99: pct(late, 0.99))
        print(
            String(
                format: "| %@ (%d×%d, %.0f ev/s) | %d/%d | %d/%d | %d / %d / %d | %.1f / %.1f / %.1f / %.1f / %.1f | %.1f µs | %.0f MB |",
                plan.name, plan.sessions, plan.subscribers / plan.sessions, plan.rate, up, trackers.count,
                delivered, expected, gaps, duplicates, outOfOrder,
                pct(latencies, 0.5), pct(latencies, 0.95), pct(latencies, 0.99), pct(latencies, 0.999), Double(latencies.last ?? 0) / 1e3,
                perDelivery, Double(rss) / 1e6))
        if let breakdown, let group = server.group { reportGroup(group, breakdown, frames: framesDelivered, latencies: latencies) }
    }

    /// Where a group's CPU went, and one `bench-delivery` line of key=value pairs that
    /// Appliance/bench/cluster.sh reads into its table.
    private func reportGroup(_ group: WatchedProcesses, _ breakdown: CPUBreakdown, frames: Int, latencies: [UInt32]) {
        let anon = group.memoryByLabel("RssAnon:")
        print("CPU over the publishing window by process group: \(breakdown.shares)")
        print(
            "RSS (anonymous) by process group: "
                + group.labels.map { String(format: "%@ %.0f MB", $0, Double(anon[$0] ?? 0) / 1e6) }.joined(separator: ", "))
        print(
            String(
                format: "bench-delivery p50_ms=%.1f p99_ms=%.1f deliveries_per_s=%.0f frames=%d publications=%d %@ %@",
                pct(latencies, 0.5), pct(latencies, 0.99), Double(frames) / max(measuredSeconds, 1e-9), frames,
                rooms.reduce(0) { $0 + $1.published.load(ordering: .relaxed) }, breakdown.perUnit(frames),
                group.labels.map { String(format: "%@_rss_mb=%.0f", $0, Double(anon[$0] ?? 0) / 1e6) }.joined(separator: " ")))
    }

    /// p50/p99 of the server's own publication → socket-write histogram, from /metrics.
    private func serverHistogram() -> String? {
        guard let (status, body) = try? BlockingHTTP(host: "127.0.0.1", port: server.port).request("GET", "/metrics"), status == 200 else {
            return nil
        }
        var buckets: [(Double, Double)] = []
        for line in String(decoding: body, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("tally_delivery_latency_seconds_bucket{le=\"") {
            let parts = line.dropFirst("tally_delivery_latency_seconds_bucket{le=\"".count).split(separator: "\"")
            guard parts.count == 2, let count = Double(parts[1].dropFirst(2).trimmingCharacters(in: .whitespaces)) else { continue }
            buckets.append((parts[0] == "+Inf" ? .infinity : Double(parts[0]) ?? .infinity, count))
        }
        guard let total = buckets.last?.1, total > 0 else { return nil }
        func quantile(_ q: Double) -> String {
            let bound = buckets.first { $0.1 >= q * total }?.0 ?? .infinity
            return bound.isInfinite ? "> 5 s" : String(format: "≤ %.2f ms", bound * 1000)
        }
        return "p50 \(quantile(0.5)), p99 \(quantile(0.99)) (histogram buckets, one sample per event and event loop)"
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        try loop.submit(body).wait()
    }
}

/// Percentile of sorted microseconds, in milliseconds.
func pct(_ sorted: [UInt32], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e3
}

/// Percentile of sorted nanoseconds, in milliseconds.
func ms(_ sorted: [UInt64], _ p: Double) -> Double {
    Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
}

/// One steady run's figures, as a markdown row.
struct Summary {
    var server: String
    var scenario: String
    var up: Int
    var connections: Int
    var delivered: Int
    var expected: Int
    var gaps: Int
    var duplicates: Int
    var outOfOrder: Int
    var p50: Double
    var p95: Double
    var p99: Double
    var p999: Double
    var max: Double
    var cpuSeconds: Double
    var frames: Int
    var perDelivery: Double
    var rssAnon: Int
    var rssShmem: Int?
    var lateP99: Double

    static let header = """
        | server | scenario | connections | stamped messages delivered / expected | gaps / dups / out-of-order | latency p50 / p95 / p99 / p99.9 / max (ms) | server CPU (s) / frames | CPU per delivery | RSS anon (shared mem) | publisher late p99 |
        |---|---|---|---|---|---|---|---|---|---|
        """

    var markdownRow: String {
        let memory =
            String(format: "%.0f MB", Double(rssAnon) / 1e6) + (rssShmem.map { String(format: " (+%.0f MB shm)", Double($0) / 1e6) } ?? "")
        return String(
            format: "| %@ | %@ | %d/%d | %d / %d | %d / %d / %d | %.1f / %.1f / %.1f / %.1f / %.1f | %.2f / %d | %.1f µs | %@ | %.1f ms |",
            server, scenario, up, connections, delivered, expected, gaps, duplicates, outOfOrder,
            p50, p95, p99, p999, max, cpuSeconds, frames, perDelivery, memory, lateP99)
    }
}
