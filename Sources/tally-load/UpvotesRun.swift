import Foundation
import NIOCore
import NIOPosix

/// The Q&A scenario: 50 questions, `participants` phones upvoting them for `seconds` (each
/// upvotes `perPerson` different questions, paced evenly on keep-alive connections), while one
/// display follows over WebSocket. Checks that every acknowledged upvote is counted (against
/// the presenter's snapshot) and reports how fast the display hears of them.
final class UpvotesRun: @unchecked Sendable {
    let server: ServerUnderTest
    let loop: any EventLoop
    let password: String
    let participants: Int
    let connections: Int
    let seconds: Double
    let questionCount = 50
    let perPerson = 5

    init(
        server: ServerUnderTest, group: MultiThreadedEventLoopGroup, password: String, participants: Int, connections: Int, seconds: Double
    ) {
        self.server = server
        self.loop = group.next()
        self.password = password
        self.participants = max(1, participants)
        self.connections = max(1, min(connections, participants))
        self.seconds = max(1, seconds)
    }

    func execute() throws {
        let http = BlockingHTTP(host: "127.0.0.1", port: server.port)
        let (operatorToken, sessionId, code, displayToken) = try http.openSession(password: password, title: "Town hall Q&A")
        let (opened, _) = try http.request("POST", "/api/v1/sessions/\(sessionId)/qna/open", json: "{}", token: operatorToken)
        guard opened == 200 else { throw LoadError("could not open Q&A (\(opened))") }
        func join() throws -> String {
            let (joined, body) = try http.request("POST", "/api/v1/join", json: #"{"joinCode":"\#(code)"}"#)
            guard joined == 201, let token = jsonString(body, "participantToken") else { throw LoadError("join failed (\(joined))") }
            return token
        }
        var questions: [String] = []
        for i in 0..<questionCount {
            let (asked, body) = try http.request(
                "POST", "/api/v1/sessions/\(sessionId)/questions", json: #"{"text":"Question number \#(i + 1)?"}"#, token: try join())
            guard asked == 201, let id = jsonString(body, "questionId") else { throw LoadError("could not ask (\(asked))") }
            questions.append(id)
        }
        var tokens: [String] = []
        for _ in 0..<participants { tokens.append(try join()) }
        print(
            "\(server.name): Q&A, \(questionCount) questions, \(participants) participants × \(perPerson) upvotes over \(Int(seconds)) s, one display over WebSocket"
        )

        let seen = WatchedEvents()
        let tracker = Tracker(session: 0)
        tracker.onMessage = { payload, arrived in
            let wall = Date().timeIntervalSince1970
            guard let object = try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView)) as? [String: Any],
                object["eventType"] as? String == "question.upvotes"
            else { return }
            let stamped = (object["timestamp"] as? String).flatMap(parseTimestamp) ?? wall
            seen.latencies.append(UInt32(clamping: max(0, Int64((wall - stamped) * 1e6))))
            seen.largest = max(seen.largest, payload.readableBytes)
            seen.count += 1
        }
        let connector = Connector(group: loop, host: "127.0.0.1", port: server.port, collector: Collector())
        let display = try connector.connect(tracker, path: "/events?sessionId=\(sessionId)&actorType=display&token=\(displayToken)").wait()
        defer { display.close(promise: nil) }
        for _ in 0..<100 where !(try loop.submit { tracker.connected }.wait()) { usleep(20_000) }

        // Request i: participant i % P upvotes a question of their own random choice.
        var rng = SystemRandomNumberGenerator()
        let host = "127.0.0.1:\(server.port)"
        var votes: [(participant: Int, question: Int)] = []
        for p in 0..<participants {
            for q in Array(0..<questionCount).shuffled(using: &rng).prefix(perPerson) { votes.append((p, q)) }
        }
        votes.shuffle(using: &rng)
        let requests: [[UInt8]] = votes.map { vote in
            Array(
                ("POST /api/v1/sessions/\(sessionId)/questions/\(questions[vote.question])/upvote HTTP/1.1\r\nHost: \(host)\r\n"
                    + "Authorization: Bearer \(tokens[vote.participant])\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                    .utf8)
        }
        let cpuBefore = server.cpuSeconds
        let (state, sendSeconds) = try sendPaced(requests, connections: connections, seconds: seconds, port: server.port, loop: loop)
        usleep(300_000)  // the last coalesced counts
        let cpu = server.cpuSeconds - cpuBefore
        let (statuses, accepted) = try loop.submit { (state.statuses, state.accepted) }.wait()

        var expected = Array(repeating: 0, count: questionCount)
        for (i, vote) in votes.enumerated() where accepted[i] { expected[vote.question] += 1 }
        let (_, view) = try http.request("GET", "/api/v1/sessions/\(sessionId)", token: operatorToken)
        var counted: [String: Int] = [:]
        if let object = try? JSONSerialization.jsonObject(with: Data(view)) as? [String: Any], let qna = object["qna"] as? [String: Any],
            let list = qna["questions"] as? [[String: Any]]
        {
            for q in list { counted[q["questionId"] as? String ?? ""] = q["upvotes"] as? Int }
        }
        let wrong = (0..<questionCount).filter { counted[questions[$0]] != expected[$0] }.count
        let latencies = try loop.submit { seen.latencies.sorted() }.wait()
        let (events, largest) = try loop.submit { (seen.count, seen.largest) }.wait()
        print(
            String(
                format: "sent %d upvotes in %.1f s: %d acknowledged, statuses %@; server CPU %.2f s", requests.count, sendSeconds,
                accepted.filter { $0 }.count, "\(statuses)", cpu))
        print(
            "counts: "
                + (wrong == 0
                    ? "every acknowledged upvote counted, exactly, on all \(questionCount) questions"
                    : "\(wrong) questions differ (FAILED)"))
        print("display: \(events) question.upvotes, largest \(largest) bytes")
        print("| measure | p50 | p99 | max |")
        print("|---|---|---|---|")
        print(
            String(
                format: "| question.upvotes: server timestamp → display (ms) | %.1f | %.1f | %.1f |", pct(latencies, 0.5),
                pct(latencies, 0.99),
                Double(latencies.last ?? 0) / 1000))
        if wrong > 0 { throw LoadError("the Q&A scenario failed its check") }
    }
}

/// What the display saw, on the client's loop.
final class WatchedEvents: @unchecked Sendable {
    var latencies: [UInt32] = []
    var largest = 0
    var count = 0
}
