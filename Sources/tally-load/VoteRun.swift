import Foundation
import NIOCore
import NIOPosix

/// Vote ingestion against the cheapest request, in one run on one server: `connections`
/// keep-alive connections send bare `GET /healthz` for `seconds`, then durable votes for
/// `seconds` (every vote changes the participant's ballot, so each is accepted and logged).
/// The server's CPU per answered request of each phase, and their ratio, come from /proc.
final class VoteRun: @unchecked Sendable {
    let server: ServerUnderTest
    let loop: any EventLoop
    let password: String
    let connections: Int
    let participants: Int
    let seconds: Double
    /// Where each connection's vote sequence stopped, so the next phase goes on flipping ballots.
    private var positions: [Int: Int] = [:]

    init(
        server: ServerUnderTest, group: MultiThreadedEventLoopGroup, password: String, connections: Int, participants: Int, seconds: Double
    ) {
        self.server = server
        self.loop = group.next()
        self.password = password
        self.connections = max(1, connections)
        self.participants = max(1, participants)
        self.seconds = min(max(seconds, 1), 60)
    }

    struct Phase {
        var name: String
        var answered = 0
        var ok = 0
        var other: [Int: Int] = [:]
        var cpuSeconds = 0.0
        var elapsed = 0.0
        var latencies: [UInt32] = []
        /// Per label, for a group of processes (`--pid a=1,b=2`).
        var breakdown: CPUBreakdown?
        var perRequest: Double { cpuSeconds / Double(max(ok, 1)) * 1e6 }
        var rate: Double { Double(ok) / max(elapsed, 1e-9) }
    }

    func execute() throws {
        let http = BlockingHTTP(host: "127.0.0.1", port: server.port)
        let (operatorToken, sessionId, code, _) = try http.openSession(password: password, title: "Votes")
        try http.awaitVisible("/api/v1/sessions/\(sessionId)", token: operatorToken)
        let (pollStatus, poll) = try http.request(
            "POST", "/api/v1/sessions/\(sessionId)/polls", json: #"{"question":"Q","options":["a","b"],"open":true}"#, token: operatorToken)
        guard pollStatus == 201, let pollId = jsonString(poll, "pollId") else { throw LoadError("could not create a poll (\(pollStatus))") }
        try http.awaitVisible("/api/v1/sessions/\(sessionId)", token: operatorToken, containing: pollId)
        var tokens: [String] = []
        for _ in 0..<participants {
            let (joined, body) = try http.request("POST", "/api/v1/join", json: #"{"joinCode":"\#(code)"}"#)
            guard joined == 201, let token = jsonString(body, "participantToken") else { throw LoadError("join failed (\(joined))") }
            tokens.append(token)
        }
        print(
            "\(server.name): votes vs. /healthz, \(connections) keep-alive connections, \(participants) participants, \(Int(seconds)) s per phase"
        )

        let host = "127.0.0.1:\(server.port)"
        let health = Array("GET /healthz HTTP/1.1\r\nHost: \(host)\r\n\r\n".utf8)
        let votePath = "/api/v1/sessions/\(sessionId)/polls/\(pollId)/votes"
        // Per connection, its participants (k, k + C, …); each pass over them flips the option.
        let voteRequests: [[[UInt8]]] = (0..<connections).map { k in
            let mine = stride(from: k, to: tokens.count, by: connections).map { tokens[$0] }
            return ["o1", "o2"].flatMap { option in
                mine.map { token in
                    let body = #"{"optionIds":["\#(option)"]}"#
                    return Array(
                        ("POST \(votePath) HTTP/1.1\r\nHost: \(host)\r\nAuthorization: Bearer \(token)\r\n"
                            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)").utf8)
                }
            }
        }
        guard connections <= tokens.count else { throw LoadError("--connections must not exceed --participants") }

        // Warm-up: every participant casts a first ballot, so the measured phase only changes ballots.
        _ = try phase("warm-up", seconds: 1, keepPositions: true) { k in voteRequests[k] }
        let healthz = try phase("GET /healthz", seconds: seconds, keepPositions: false) { _ in [health] }
        let votes = try phase("POST vote (durable)", seconds: seconds, keepPositions: true) { k in voteRequests[k] }
        let ratio = votes.perRequest / max(healthz.perRequest, 1e-9)
        for p in [healthz, votes] {
            let sorted = p.latencies.sorted()
            print(
                String(
                    format:
                        "%@: %d answered (%d 2xx) in %.1f s = %.0f/s; latency p50 %.2f ms, p99 %.2f ms; server CPU %.2f s = %.1f µs per 2xx answer; other statuses %@",
                    p.name, p.answered, p.ok, p.elapsed, p.rate, pct(sorted, 0.5), pct(sorted, 0.99), p.cpuSeconds, p.perRequest,
                    p.other.isEmpty ? "none" : "\(p.other)"))
        }
        print(
            String(
                format: "server CPU per accepted durable vote / per GET /healthz: %.1f / %.1f µs = %.2f (target ≤ 1.5: %@)",
                votes.perRequest, healthz.perRequest, ratio, ratio <= 1.5 ? "met" : "missed"))
        let (_, view) = try http.request("GET", "/api/v1/sessions/\(sessionId)", token: operatorToken)
        let ballots = (try? JSONSerialization.jsonObject(with: Data(view)) as? [String: Any]).flatMap { object -> Int? in
            guard let polls = object["polls"] as? [[String: Any]], let results = polls.first?["results"] as? [String: Any] else {
                return nil
            }
            return results["totalBallots"] as? Int
        }
        print("ballots counted at the end: \(ballots.map(String.init) ?? "?") of \(participants)")
        if let healthzSplit = healthz.breakdown, let voteSplit = votes.breakdown {
            print("CPU of the vote phase by process group: \(voteSplit.shares)")
            print("CPU of the /healthz phase by process group: \(healthzSplit.shares)")
            // One line of key=value pairs for Appliance/bench/cluster.sh.
            print(
                String(
                    format: "bench-votes votes_per_s=%.0f p50_ms=%.2f p99_ms=%.2f %@ healthz_per_s=%.0f healthz_total_us=%.1f",
                    votes.rate, pct(votes.latencies.sorted(), 0.5), pct(votes.latencies.sorted(), 0.99), voteSplit.perUnit(votes.ok),
                    healthz.rate, healthz.perRequest))
        }
        print("| request | answered/s (2xx) | p50 / p99 (ms) | server CPU per 2xx answer | non-2xx |")
        print("|---|---|---|---|---|")
        for p in [healthz, votes] {
            let sorted = p.latencies.sorted()
            print(
                String(
                    format: "| %@ | %.0f | %.2f / %.2f | %.1f µs | %d |", p.name, p.rate, pct(sorted, 0.5), pct(sorted, 0.99), p.perRequest,
                    p.other.values.reduce(0, +)))
        }
        print(String(format: "| ratio vote / healthz | | | **%.2f** (target ≤ 1.5: %@) | |", ratio, ratio <= 1.5 ? "met" : "missed"))
    }

    /// Runs `connections` closed-loop clients (one request in flight each) until the deadline.
    private func phase(_ name: String, seconds: Double, keepPositions: Bool, requests: (Int) -> [[UInt8]]) throws -> Phase {
        let state = PhaseState()
        let deadline = now() + UInt64(seconds * 1e9)
        let groupBefore = server.cpuByLabel
        let cpuBefore = server.cpuSeconds
        let started = now()
        var channels: [any Channel] = []
        for k in 0..<connections {
            let mine = requests(k)
            let start = keepPositions ? (positions[k] ?? 0) : 0
            let channel = try ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            RequestLoop(index: k, start: start, requests: mine, deadline: deadline, state: state))
                    }
                }
                .connect(host: "127.0.0.1", port: server.port).wait()
            channels.append(channel)
        }
        // Bounded: the deadline plus 10 s for the last answers.
        for _ in 0..<Int((seconds + 10) * 20) {
            if try loop.submit({ state.finished == self.connections }).wait() { break }
            usleep(50_000)
        }
        let elapsed = Double(now() - started) / 1e9
        let cpu = server.cpuSeconds - cpuBefore
        let breakdown = server.group.map { CPUBreakdown(labels: $0.labels, before: groupBefore, after: server.cpuByLabel) }
        for channel in channels { channel.close(promise: nil) }
        if keepPositions { positions = try loop.submit { state.positions }.wait() }
        return try loop.submit {
            var phase = Phase(name: name)
            phase.answered = state.answered
            phase.ok = state.ok
            phase.other = state.other
            phase.cpuSeconds = cpu
            phase.elapsed = elapsed
            phase.latencies = state.latencies
            phase.breakdown = breakdown
            return phase
        }.wait()
    }
}

/// The status of the next complete HTTP/1.1 response in `buffer` (head + Content-Length body),
/// consumed; nil while it is not all there.
func takeResponse(from buffer: inout ByteBuffer) -> Int? {
    let view = buffer.readableBytesView
    guard let end = view.firstRange(of: [13, 10, 13, 10]) else { return nil }
    let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
    let status = Int(head.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
    var length = 0
    for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
        length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
    }
    let total = end.upperBound - view.startIndex + length
    guard buffer.readableBytes >= total else { return nil }
    buffer.moveReaderIndex(forwardBy: total)
    return status
}

/// Counters shared by a phase's connections; touched only on the client's event loop.
final class PhaseState: @unchecked Sendable {
    var answered = 0
    var ok = 0
    var other: [Int: Int] = [:]
    var latencies: [UInt32] = []
    var finished = 0
    var positions: [Int: Int] = [:]
}

/// One keep-alive connection: sends a request, reads its answer (head + Content-Length),
/// sends the next, until the deadline.
final class RequestLoop: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let requests: [[UInt8]]
    private let deadline: UInt64
    private let state: PhaseState
    private let index: Int
    private var next: Int
    private var sentAt: UInt64 = 0
    private var buffer = ByteBuffer()
    private var done = false

    init(index: Int, start: Int, requests: [[UInt8]], deadline: UInt64, state: PhaseState) {
        self.index = index
        self.next = start
        self.requests = requests
        self.deadline = deadline
        self.state = state
    }

    func channelActive(context: ChannelHandlerContext) { send(context) }

    func channelInactive(context: ChannelHandlerContext) { finish() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    private func finish() {
        if !done {
            done = true
            state.finished += 1
            state.positions[index] = next
        }
    }

    private func send(_ context: ChannelHandlerContext) {
        guard now() < deadline else {
            finish()
            return
        }
        let request = requests[next % requests.count]
        next += 1
        sentAt = now()
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: request)), promise: nil)
    }

    private static let contentLength = Array("content-length:".utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let status = takeResponse(from: &buffer) {
            state.answered += 1
            if (200..<300).contains(status) { state.ok += 1 } else { state.other[status, default: 0] += 1 }
            state.latencies.append(UInt32(clamping: (now() - sentAt) / 1000))
            buffer.discardReadBytes()
            send(context)
        }
    }
}
