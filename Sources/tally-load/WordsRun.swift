import Foundation
import NIOCore
import NIOPosix

/// The word-cloud scenario: `participants` phones each send three words, spread evenly over
/// `seconds`, on `connections` keep-alive connections, while one display follows the session
/// over WebSocket. Checks what the room would notice — every accepted word counted (against the
/// complete results of the JSON export), every `poll.results` within 16 KiB — and reports how
/// fast the display sees the cloud grow.
final class WordsRun: @unchecked Sendable {
    let server: ServerUnderTest
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let password: String
    let participants: Int
    let connections: Int
    let seconds: Double

    init(
        server: ServerUnderTest, group: MultiThreadedEventLoopGroup, password: String, participants: Int, connections: Int, seconds: Double
    ) {
        self.server = server
        self.group = group
        self.loop = group.next()
        self.password = password
        self.participants = max(1, participants)
        self.connections = max(1, min(connections, participants))
        self.seconds = max(1, seconds)
    }

    /// What the display saw, on the client's loop.
    final class Display: @unchecked Sendable {
        var results: [(arrived: UInt64, totalBallots: Int, bytes: Int, serverToDisplayMicros: Int64)] = []
        var largest = 0
        var other = 0
    }

    /// A conference crowd's words: a few very common, a long tail (Zipf-like), and one in ten a
    /// word nobody else uses.
    static let vocabulary: [String] =
        ("inspiring insightful fun long practical useful inspiring clear energising deep technical friendly "
        + "crowded fast slow brilliant boring informative engaging thoughtful funny dense motivating curious "
        + "surprising honest ambitious open bold calm loud warm cold coffee community future ai security speed "
        + "scale privacy design data cloud edge rust swift linux hardware music food venue wifi questions demo "
        + "stage slides speaker keynote workshop networking hallway learning sharing growth impact change vision").split(separator: " ")
        .map(String.init)

    static func words(for participant: Int, using rng: inout some RandomNumberGenerator) -> [String] {
        var chosen: [String] = []
        while chosen.count < 3 {
            let word: String
            if Double.random(in: 0..<1, using: &rng) < 0.1 {
                word = "w\(participant)x\(chosen.count)"
            } else {
                // Zipf-like: index ~ n^u, so low indexes are much more frequent.
                let n = Double(vocabulary.count)
                word = vocabulary[min(vocabulary.count - 1, Int(pow(n, Double.random(in: 0..<1, using: &rng))) - 1)]
            }
            if !chosen.contains(word) { chosen.append(word) }
        }
        return chosen
    }

    func execute() throws {
        let http = BlockingHTTP(host: "127.0.0.1", port: server.port)
        let (operatorToken, sessionId, code, displayToken) = try http.openSession(password: password, title: "Word cloud")
        let (pollStatus, poll) = try http.request(
            "POST", "/api/v1/sessions/\(sessionId)/polls",
            json: #"{"question":"One word for this conference?","kind":"wordcloud","maxWords":3,"open":true}"#, token: operatorToken)
        guard pollStatus == 201, let pollId = jsonString(poll, "pollId") else {
            throw LoadError("could not create the poll (\(pollStatus))")
        }
        print("\(server.name): word cloud, \(participants) participants × 3 words within \(Int(seconds)) s, one display over WebSocket")
        var tokens: [String] = []
        for _ in 0..<participants {
            let (joined, body) = try http.request("POST", "/api/v1/join", json: #"{"joinCode":"\#(code)"}"#)
            guard joined == 201, let token = jsonString(body, "participantToken") else { throw LoadError("join failed (\(joined))") }
            tokens.append(token)
        }

        // The display: every poll.results it receives, its size and how long the server took to get it there.
        let display = Display()
        let tracker = Tracker(session: 0)
        tracker.onMessage = { payload, arrived in
            let wall = Date().timeIntervalSince1970
            guard let object = try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView)) as? [String: Any],
                object["eventType"] as? String == "poll.results", let inner = object["payload"] as? [String: Any]
            else {
                display.other += 1
                return
            }
            let stamped = (object["timestamp"] as? String).flatMap(parseTimestamp) ?? wall
            display.results.append(
                (arrived, inner["totalBallots"] as? Int ?? 0, payload.readableBytes, Int64((wall - stamped) * 1e6)))
            display.largest = max(display.largest, payload.readableBytes)
        }
        let connector = Connector(group: loop, host: "127.0.0.1", port: server.port, collector: Collector())
        let displayChannel = try connector.connect(
            tracker, path: "/events?sessionId=\(sessionId)&actorType=display&token=\(displayToken)"
        ).wait()
        defer { displayChannel.close(promise: nil) }
        for _ in 0..<100 where !(try loop.submit { tracker.connected }.wait()) { usleep(20_000) }

        // The ballots, paced: ballot i goes out at i × seconds / participants (or as soon as its
        // connection's previous answer is in).
        var rng = SystemRandomNumberGenerator()
        let host = "127.0.0.1:\(server.port)"
        let path = "/api/v1/sessions/\(sessionId)/polls/\(pollId)/votes"
        let ballots: [[String]] = (0..<participants).map { Self.words(for: $0, using: &rng) }
        let requests: [[UInt8]] = (0..<participants).map { i in
            let body = #"{"words":[\#(ballots[i].map { "\"\($0)\"" }.joined(separator: ","))]}"#
            return Array(
                ("POST \(path) HTTP/1.1\r\nHost: \(host)\r\nAuthorization: Bearer \(tokens[i])\r\n"
                    + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)").utf8)
        }
        let cpuBefore = server.cpuSeconds
        let (state, sendSeconds) = try sendPaced(requests, connections: connections, seconds: seconds, port: server.port, loop: loop)
        let (statuses, acks, accepted) = try loop.submit { (state.statuses, state.acks, state.accepted) }.wait()
        let acceptedCount = accepted.filter { $0 }.count
        // Wait (bounded) for the display to show every accepted ballot.
        for _ in 0..<200 {
            if try loop.submit({ (display.results.last?.totalBallots ?? 0) >= acceptedCount }).wait() { break }
            usleep(50_000)
        }
        let cpu = server.cpuSeconds - cpuBefore

        // Every accepted word counted: the export's complete results against what was sent.
        var expected: [String: Int] = [:]
        for (i, words) in ballots.enumerated() where accepted[i] {
            for word in words { expected[word, default: 0] += 1 }
        }
        let (exportStatus, export) = try http.request("GET", "/api/v1/sessions/\(sessionId)/export.json", token: operatorToken)
        var counted: [String: Int] = [:]
        if exportStatus == 200, let doc = try? JSONSerialization.jsonObject(with: Data(export)) as? [String: Any],
            let polls = doc["polls"] as? [[String: Any]], let results = polls.first?["results"] as? [String: Any],
            let words = results["words"] as? [[String: Any]]
        {
            for word in words { counted[word["text"] as? String ?? "", default: 0] += word["count"] as? Int ?? 0 }
        }
        let missing = expected.filter { counted[$0.key] != $0.value }.count + counted.filter { expected[$0.key] == nil }.count

        let seen = try loop.submit { display.results }.wait()
        let largest = try loop.submit { display.largest }.wait()
        let serverToDisplay = seen.map { UInt32(clamping: max(0, $0.serverToDisplayMicros)) }.sorted()
        // Ballot acknowledged → the display shows a count that includes it: the first results
        // to arrive after the acknowledgement whose total reaches the ballots acknowledged by then.
        var ackToDisplay: [UInt32] = []
        var acknowledgedSoFar = 0
        var cursor = 0
        for ack in acks.sorted() {
            acknowledgedSoFar += 1
            while cursor < seen.count, seen[cursor].arrived < ack || seen[cursor].totalBallots < acknowledgedSoFar { cursor += 1 }
            guard cursor < seen.count else { break }
            ackToDisplay.append(UInt32(clamping: (seen[cursor].arrived - ack) / 1000))
        }
        ackToDisplay.sort()
        let over = seen.filter { $0.bytes > 16 * 1024 }.count
        print(
            String(
                format: "sent %d ballots in %.1f s: %d accepted, statuses %@; server CPU %.2f s", participants, sendSeconds, acceptedCount,
                "\(statuses)", cpu))
        print(
            "words: \(expected.values.reduce(0, +)) accepted, \(expected.count) distinct; counted by the server: "
                + (missing == 0 ? "all, exactly" : "\(missing) words differ (FAILED)"))
        print(
            "display: \(seen.count) poll.results, largest \(largest) bytes (limit 16384: \(over == 0 ? "met" : "\(over) over, FAILED")), "
                + "last total \(seen.last?.totalBallots ?? 0)")
        print("| measure | p50 | p99 | max |")
        print("|---|---|---|---|")
        for (name, list) in [
            ("poll.results: server timestamp → display (ms)", serverToDisplay), ("ballot acknowledged → on the display (ms)", ackToDisplay),
        ] {
            print(String(format: "| %@ | %.1f | %.1f | %.1f |", name, pct(list, 0.5), pct(list, 0.99), Double(list.last ?? 0) / 1000))
        }
        if missing > 0 || over > 0 { throw LoadError("the word cloud scenario failed its checks") }
    }
}

extension BlockingHTTP {
    /// Signs in as the operator and creates a session: (operator token, session id, join code,
    /// display token).
    func openSession(password: String, title: String) throws -> (String, String, String, String) {
        let (status, body) = try request("POST", "/api/v1/auth/login", json: #"{"password":"\#(password)"}"#)
        guard status == 200, let operatorToken = jsonString(body, "token") else { throw LoadError("operator sign-in failed (\(status))") }
        let (created, session) = try request("POST", "/api/v1/sessions", json: #"{"title":"\#(title)"}"#, token: operatorToken)
        guard created == 201, let sessionId = jsonString(session, "sessionId"), let code = jsonString(session, "joinCode"),
            let displayToken = jsonString(session, "displayToken")
        else { throw LoadError("could not create a session (\(created))") }
        return (operatorToken, sessionId, code, displayToken)
    }
}

/// RFC 3339 with milliseconds, as the envelope's `timestamp` (seconds since 1970).
func parseTimestamp(_ text: String) -> Double? {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.date(from: text)?.timeIntervalSince1970
}

/// Sends `requests` paced evenly over `seconds` (request i at i × seconds / count, or as soon as
/// its connection's previous answer is in) on `connections` keep-alive connections, and waits —
/// bounded: the window plus 20 s — for every answer. Read the returned state on `loop`.
func sendPaced(_ requests: [[UInt8]], connections: Int, seconds: Double, port: Int, loop: any EventLoop) throws -> (
    state: PacedState, seconds: Double
) {
    let state = PacedState(count: requests.count)
    let start = now() + 50_000_000
    let interval = UInt64(seconds * 1e9) / UInt64(max(1, requests.count))
    var channels: [any Channel] = []
    for k in 0..<connections {
        let mine = Array(stride(from: k, to: requests.count, by: connections))
        channels.append(
            try ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            PacedSender(indexes: mine, requests: requests, start: start, interval: interval, state: state))
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait())
    }
    for _ in 0..<Int((seconds + 20) * 20) {
        if try loop.submit({ state.finished == connections }).wait() { break }
        usleep(50_000)
    }
    let elapsed = Double(now() - start) / 1e9
    for channel in channels { channel.close(promise: nil) }
    return (state, elapsed)
}

/// Shared by the paced connections; touched only on the client's event loop.
final class PacedState: @unchecked Sendable {
    var statuses: [Int: Int] = [:]
    var acks: [UInt64] = []
    var accepted: [Bool]
    var finished = 0
    init(count: Int) { accepted = Array(repeating: false, count: count) }
}

/// One keep-alive connection sending its ballots at their slots, one in flight at a time.
final class PacedSender: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let indexes: [Int]
    private let requests: [[UInt8]]
    private let start: UInt64
    private let interval: UInt64
    private let state: PacedState
    private var next = 0
    private var buffer = ByteBuffer()
    private var done = false

    init(indexes: [Int], requests: [[UInt8]], start: UInt64, interval: UInt64, state: PacedState) {
        self.indexes = indexes
        self.requests = requests
        self.start = start
        self.interval = interval
        self.state = state
    }

    func channelActive(context: ChannelHandlerContext) { schedule(context) }
    func channelInactive(context: ChannelHandlerContext) { finish() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    private func finish() {
        if !done {
            done = true
            state.finished += 1
        }
    }

    private func schedule(_ context: ChannelHandlerContext) {
        guard next < indexes.count else {
            finish()
            return
        }
        let due = start + UInt64(indexes[next]) * interval
        let current = now()
        if due > current {
            context.eventLoop.scheduleTask(in: .nanoseconds(Int64(due - current))) { self.send(context) }
        } else {
            send(context)
        }
    }

    private func send(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: requests[indexes[next]])), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let status = takeResponse(from: &buffer) {
            buffer.discardReadBytes()
            state.statuses[status, default: 0] += 1
            if (200..<300).contains(status) {
                state.accepted[indexes[next]] = true
                state.acks.append(now())
            }
            next += 1
            schedule(context)
        }
    }
}
