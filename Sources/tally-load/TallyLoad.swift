import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// `tally-load`: drives a real `tally serve` with thousands of WebSocket subscribers and a
/// publisher at a fixed rate, and reports delivery, order, latency and the server's CPU and
/// memory. Build it in release: `swift run -c release tally-load adr-peak`.
///
/// Latency is measured from each publication's *scheduled* time (stamped into the poll's
/// question) to its arrival, so a server that falls behind shows it (no coordinated omission).
/// Each publication is a quick poll created open, which every subscriber receives as two
/// events (`poll.closed` for the previous poll, `poll.opened`), so the publisher runs at half
/// the event rate.
@main
struct TallyLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-load",
        abstract: "Load generator for Tally's real-time delivery (and nginx + nchan as the reference peer).",
        discussion: """
            Scenarios (loopback only; each starts its own server unless --port):
              adr-normal     5 sessions × 400 WebSockets, 50 ev/s, fsync
              adr-peak       5 × 400, 150 ev/s
              big-room       1 × 2000, 30 ev/s
              idle           10,000 idle WebSockets: anonymous RSS per
                             connection (target ≤ 12 KB)
              storm          2,000 clients drop, miss 500 events, reconnect
                             at once (target: all caught up ≤ 1 s)
              slow           one client stops reading among 400 measured
              votes          server CPU per durable vote vs. per bare
                             GET /healthz, same run (target ratio ≤ 1.5)
              wordcloud      2,000 participants each send three words
                             within 10 s while a display watches: every
                             accepted word counted, every poll.results
                             ≤ 16 KiB, display delivery p50/p99
              upvotes        Q&A: 2,000 participants upvote 50 questions
                             (5 each) over 10 s while a display watches:
                             every acknowledged upvote counted
              quiz           2,000 players (each with a WebSocket) answer a
                             quiz question within 2 s of its opening, 20
                             displays watch; the server closes it at
                             closesAt: every answer accepted and scored,
                             leaderboard and own scores closesAt → screen
                             p50/p99 (target p99 ≤ 100 ms)
              compare-nchan  adr-normal on nginx + nchan (2 workers,
                             in-memory), then on Tally; same client, one
                             table
            --peer nchan runs adr-normal, adr-peak, big-room or idle on
            nginx + nchan instead (Appliance/bench/nchan-peer.sh install).

            Before/after a change, everything the issue measures:
              Appliance/bench/run.sh
            which is (after nchan-peer.sh install and a release build of
            the tally-load and tally products):
              .build/release/tally-load compare-nchan
              .build/release/tally-load idle
              .build/release/tally-load storm
              .build/release/tally-load votes
            See Appliance/bench/README.md.
            """)

    @Argument(help: "adr-normal, adr-peak, big-room, idle, storm, slow, votes, wordcloud, upvotes, quiz or compare-nchan.")
    var scenario: String

    @Option(help: "Seconds of publishing (votes: seconds of each phase is half of it).") var duration: Double = 20
    @Option(help: "Events per second in total (overrides the scenario).") var rate: Double?
    @Option(help: "Sessions (overrides the scenario).") var sessions: Int?
    @Option(help: "Subscribers in all (overrides the scenario).") var subscribers: Int?
    @Option(help: "New connections per second while ramping up.") var ramp: Double = 2000
    @Option(help: "The tally binary to start (default: next to this one).") var binary: String?
    @Option(help: "Use a server already listening on 127.0.0.1:<port> (then also give --pid).") var port: Int?
    @Option(
        help: """
            The running server's pid, for CPU and memory; or several, comma-separated, each [label=]pid[+] (+: with its \
            children, e.g. PostgreSQL's postmaster): CPU and memory are then summed over all and also reported per label.
            """)
    var pid: String?
    @Option(help: "Operator password of a running server.") var password = "load-test-password"
    @Option(help: "fsync or os (for a server this starts).") var durability = "fsync"
    @Option(help: "tally, or nchan (nginx + nchan started here, same scenario and client).") var peer = "tally"
    @Option(help: "nginx binary for --peer nchan.") var nginx: String?
    @Option(help: "nchan module (.so) for --peer nchan.") var nchanModule: String?
    @Option(help: "nginx worker processes for --peer nchan.") var nginxWorkers = 2
    @Option(help: "Keep-alive connections of the votes scenario.") var connections = 64
    @Option(help: "Participants of the votes (default 500), wordcloud, upvotes and quiz (default 2000) scenarios.") var participants: Int?
    @Option(help: "Displays watching the quiz scenario.") var displays = 20

    func run() throws {
        raiseFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        if scenario == "compare-nchan" {
            var plan = Plan.named("adr-normal")
            apply(&plan)
            var rows: [Summary] = []
            for target in ["nchan", "tally"] {
                let server = try startServer(target)
                defer { server.stop() }
                let run = LoadRun(plan: plan, server: server, group: group, ramp: ramp, duration: duration, password: password)
                try run.execute()
                if let summary = run.summary { rows.append(summary) }
                print("")
                // Let sockets in TIME_WAIT and the client's buffers settle between the two.
                sleep(2)
            }
            print(
                "## \(plan.name) (\(plan.sessions)×\(plan.subscribers / plan.sessions), \(Int(plan.rate)) ev/s, \(Int(duration)) s): nginx + nchan vs. Tally, same client"
            )
            print(Summary.header)
            for row in rows { print(row.markdownRow) }
            return
        }
        var plan = Plan.named(scenario)
        apply(&plan)
        if peer == "nchan", !["adr-normal", "adr-peak", "big-room", "idle"].contains(plan.name) {
            throw LoadError("--peer nchan runs adr-normal, adr-peak, big-room or idle")
        }
        let server = try startServer(peer)
        defer { server.stop() }
        if scenario == "upvotes" {
            try UpvotesRun(
                server: server, group: group, password: password, participants: participants ?? 2000, connections: connections,
                seconds: min(duration, 10)
            ).execute()
            return
        }
        if scenario == "quiz" {
            try QuizRun(
                server: server, group: group, password: password, participants: participants ?? 2000, displays: displays,
                connections: connections
            ).execute()
            return
        }
        if scenario == "wordcloud" {
            try WordsRun(
                server: server, group: group, password: password, participants: participants ?? 2000,
                connections: connections, seconds: min(duration, 10)
            ).execute()
            return
        }
        if scenario == "votes" {
            try VoteRun(
                server: server, group: group, password: password, connections: connections,
                participants: participants ?? 500, seconds: duration / 2
            ).execute()
            return
        }
        let run = LoadRun(plan: plan, server: server, group: group, ramp: ramp, duration: duration, password: password)
        try run.execute()
        if let summary = run.summary {
            print(Summary.header)
            print(summary.markdownRow)
        }
    }

    private func apply(_ plan: inout Plan) {
        if let rate { plan.rate = rate }
        if let sessions { plan.sessions = sessions }
        if let subscribers { plan.subscribers = subscribers }
    }

    private func startServer(_ kind: String) throws -> ServerUnderTest {
        switch kind {
        case "tally": return try ServerUnderTest.start(binary: binary, port: port, pid: pid, password: password, durability: durability)
        case "nchan": return try NchanPeer.start(nginx: nginx, module: nchanModule, workers: nginxWorkers)
        default: throw LoadError("--peer is tally or nchan")
        }
    }
}

struct Plan {
    var name: String
    var sessions: Int
    var subscribers: Int
    /// Events per second delivered to each subscriber, summed over sessions.
    var rate: Double

    static func named(_ name: String) -> Plan {
        switch name {
        case "adr-normal": return Plan(name: name, sessions: 5, subscribers: 2000, rate: 50)
        case "adr-peak": return Plan(name: name, sessions: 5, subscribers: 2000, rate: 150)
        case "big-room": return Plan(name: name, sessions: 1, subscribers: 2000, rate: 30)
        case "idle": return Plan(name: name, sessions: 1, subscribers: 10_000, rate: 0)
        case "storm": return Plan(name: name, sessions: 1, subscribers: 2000, rate: 30)
        case "slow": return Plan(name: name, sessions: 1, subscribers: 400, rate: 30)
        case "votes", "wordcloud", "upvotes", "quiz": return Plan(name: name, sessions: 1, subscribers: 0, rate: 0)
        default:
            print(
                "unknown scenario \(name): adr-normal, adr-peak, big-room, idle, storm, slow, votes, wordcloud, upvotes, quiz or compare-nchan"
            )
            Foundation.exit(64)
        }
    }
}

func raiseFileLimit() {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// The server process: started here (fresh data directory) or one already running. For nginx
/// + nchan, the master and its worker processes together.
final class ServerUnderTest {
    let name: String
    let port: Int
    let pid: Int32
    let isNchan: Bool
    /// Several processes serving together (instances, load balancer, database), from `--pid`;
    /// nil for one process.
    let group: WatchedProcesses?
    private let process: Process?
    private let dataDirectory: String?
    private let includeChildren: Bool

    init(
        name: String, port: Int, pid: Int32, process: Process?, dataDirectory: String?, includeChildren: Bool = false,
        group: WatchedProcesses? = nil
    ) {
        self.name = name
        self.port = port
        self.pid = pid
        self.process = process
        self.dataDirectory = dataDirectory
        self.includeChildren = includeChildren
        self.isNchan = includeChildren
        self.group = group
    }

    static func start(binary: String?, port: Int?, pid: String?, password: String, durability: String) throws -> ServerUnderTest {
        if let port {
            guard let pid else { throw LoadError("--port needs --pid (the server's process id, for CPU and memory)") }
            let watched = try WatchedProcesses.parse(pid)
            guard watched.isGroup else {
                return ServerUnderTest(name: "tally", port: port, pid: watched.entries[0].pid, process: nil, dataDirectory: nil)
            }
            return ServerUnderTest(
                name: watched.labels.joined(separator: " + "), port: port, pid: watched.entries[0].pid, process: nil,
                dataDirectory: nil, group: watched)
        }
        let executable =
            binary ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tally").path
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw LoadError("no tally binary at \(executable): build it (swift build -c release) or pass --binary")
        }
        let directory = NSTemporaryDirectory() + "tally-load-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let chosen = freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        // Request logging at info costs CPU per publication; the run measures delivery.
        process.arguments = [
            "serve", "--host", "127.0.0.1", "--port", "\(chosen)", "--data-dir", directory, "--operator-password", password,
            "--no-mdns", "--rate-limits", "no", "--durability", durability, "--ring-size", "512MiB", "--log-level", "warning",
            "--max-connections", "100000", "--max-connections-per-ip", "100000",
        ]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = log
        process.standardError = FileHandle.standardError
        try process.run()
        let server = ServerUnderTest(
            name: "tally (\(durability))", port: chosen, pid: process.processIdentifier, process: process, dataDirectory: directory)
        let client = BlockingHTTP(host: "127.0.0.1", port: chosen)
        for _ in 0..<300 {
            if let (status, _) = try? client.request("GET", "/readyz"), status == 200 { return server }
            usleep(100_000)
        }
        server.stop()
        throw LoadError("the server did not become ready")
    }

    func stop() {
        if let process, process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        if let dataDirectory { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }

    var childPids: [Int32] { includeChildren ? childProcesses(of: pid) : [] }
    private var pids: [Int32] { group?.pids ?? ([pid] + childPids) }

    /// CPU seconds so far per label of a group (empty for one process), to split a run's cost.
    var cpuByLabel: [String: Double] { group?.cpuByLabel() ?? [:] }

    /// User + system CPU seconds so far, from /proc (master and workers for nginx; for a group,
    /// every process of it, with the reaped children of `+` entries).
    var cpuSeconds: Double {
        if let group { return group.cpuByLabel().values.reduce(0, +) }
        return pids.reduce(0) { total, pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return total }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
            let utime = Double(fields[11]) ?? 0
            let stime = Double(fields[12]) ?? 0
            return total + (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
    }

    /// Resident anonymous memory: the server's own heap and stacks. The event ring is a mapped
    /// file, so its pages are page cache (RssFile), shared and reclaimable; they are not counted.
    /// For nginx: the sum over master and workers.
    var rssBytes: Int { status("RssAnon:") }
    /// Resident shared memory (nchan keeps its channels and messages in nginx's shared memory
    /// zone; summed over processes, so pages touched by several workers count more than once).
    var rssShmemBytes: Int { status("RssShmem:") }
    /// Everything resident, including the mapped ring's pages.
    var rssTotalBytes: Int { status("VmRSS:") }

    private func status(_ field: String) -> Int {
        pids.reduce(0) { total, pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return total }
            for line in status.split(separator: "\n") where line.hasPrefix(field) {
                return total + (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
            }
            return total
        }
    }
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            _ = bind(fd, pointer, length)
            return getsockname(fd, pointer, &length)
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
