import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyDiscovery
import TallyDomain
import TallyRealtime
import Testing

@testable import TallyServer

/// A stream the hub counts as a WebSocket (any sink that is not an SSE queue).
private final class QuietSink: EventSink {
    let eventLoop: any EventLoop = NIOSingletons.posixEventLoopGroup.next()
    func deliver(_ events: [EncodedEvent]) -> Delivery { Delivery(written: events.count) }
    func keepAlive(stallLimit: Duration) -> Delivery { Delivery() }
    func close(_ reason: StreamEnd) {}
}

private func consoleRequest() -> Request {
    Request(
        head: HTTPRequest(method: .get, scheme: "http", authority: "192.168.4.1:8080", path: "/api/v1/operator/status"),
        body: .init(buffer: ByteBuffer()))
}

@Suite("Operator console")
struct OperatorConsoleTests {
    /// Only the operator reads the console: nobody signed in gets 401, a presenter, display or
    /// participant 403 — with a sentence that says where to sign in.
    @Test func nonOperatorsAreRefused() async throws {
        let app = try await testApplication()
        try await app.application.test(.router) { client in
            let api = RouterCaller(client: client)
            let signIn = try await api.json(.post, "/api/v1/auth/login", body: #"{"password":"correct horse battery"}"#)
            let op = try #require(signIn["token"] as? String)
            let session = try await api.json(.post, "/api/v1/sessions", token: op, body: #"{"title":"Keynote"}"#)
            let code = try #require(session["joinCode"] as? String)
            let participant = try await api.json(.post, "/api/v1/join", body: #"{"joinCode":"\#(code)"}"#)

            let anonymous = try await api.call(.get, "/api/v1/operator/status")
            #expect(anonymous.status == .unauthorized)
            #expect(String(buffer: anonymous.body).contains("sign in on /presenter"))
            for token in [session["presenterToken"], session["displayToken"], participant["participantToken"]].compactMap({ $0 as? String })
            {
                let refused = try await api.call(.get, "/api/v1/operator/status", token: token)
                #expect(refused.status == .forbidden)
            }
            let allowed = try await api.call(.get, "/api/v1/operator/status", token: op)
            #expect(allowed.status == .ok)
            #expect(allowed.headers[.contentType] == "application/json")
            #expect(app.routeRoles["GET /api/v1/operator/status"] == .operator)
        }
    }

    /// The snapshot counts what the room is doing: participants, streams by transport, the open
    /// poll, and votes per second over the rate window (between two readings of the sampler).
    @Test func snapshotCountsParticipantsStreamsAndVotes() async throws {
        let app = try await testApplication(rateLimits: false)
        try await app.application.test(.router) { client in
            let api = RouterCaller(client: client)
            let signIn = try await api.json(.post, "/api/v1/auth/login", body: #"{"password":"correct horse battery"}"#)
            let op = try #require(signIn["token"] as? String)
            let session = try await api.json(.post, "/api/v1/sessions", token: op, body: #"{"title":"Town hall"}"#)
            _ = try await api.json(.post, "/api/v1/sessions", token: op, body: #"{"title":"Quiet room"}"#)
            let sessionId = try #require(session["sessionId"] as? String)
            let code = try #require(session["joinCode"] as? String)
            let poll = try await api.json(
                .post, "/api/v1/sessions/\(sessionId)/polls", token: op,
                body: #"{"question":"Coffee or tea?","options":["Coffee","Tea"],"open":true}"#)
            let pollId = try #require(poll["pollId"] as? String)
            var participants: [(id: String, token: String)] = []
            for _ in 0..<3 {
                let joined = try await api.json(.post, "/api/v1/join", body: #"{"joinCode":"\#(code)"}"#)
                participants.append((try #require(joined["participantId"] as? String), try #require(joined["participantToken"] as? String)))
            }
            // Two phones on WebSocket, one on SSE, and the presenter's screen on WebSocket.
            let hub = app.streams.hub
            let loop = NIOSingletons.posixEventLoopGroup.next()
            var streams: [Subscription] = []
            for (index, participant) in participants.enumerated() {
                let sink: any EventSink =
                    index == 2 ? SSESink(eventLoop: loop, queueLimit: 64, metrics: hub.metrics) : QuietSink()
                streams.append(try hub.subscribe(sessionId: sessionId, role: .participant, participant: participant.id, sink: sink).0)
            }
            streams.append(try hub.subscribe(sessionId: sessionId, role: .presenter, sink: QuietSink()).0)
            defer { streams.forEach(hub.unsubscribe) }

            // A reading before the votes, then three votes, then the snapshot 10 s later.
            let start = ContinuousClock.now
            app.console.sample(at: start)
            for participant in participants {
                _ = try await api.json(
                    .post, "/api/v1/sessions/\(sessionId)/polls/\(pollId)/votes", token: participant.token, body: #"{"optionIds":["o1"]}"#)
            }
            let snapshot = app.console.snapshot(for: consoleRequest(), at: start + .seconds(10))
            #expect(snapshot.sessionsActive == 2)
            #expect(snapshot.sessions.map(\.title) == ["Quiet room", "Town hall"], "newest first")
            let row = try #require(snapshot.sessions.first { $0.sessionId == sessionId })
            #expect(row.participants == 3)
            #expect(row.streams.webSocket == 3)
            #expect(row.streams.sse == 1)
            #expect(row.openPoll?.question == "Coffee or tea?")
            #expect(row.votesPerSecond == 0.3)
            #expect(snapshot.delivery.votesPerSecond == 0.3)
            #expect(snapshot.delivery.rateWindowSeconds == 10)
            #expect(snapshot.sessions.first { $0.title == "Quiet room" }?.openPoll == nil)
            #expect(snapshot.box.joinUrl == "http://192.168.4.1:8080/")
            #expect(snapshot.box.mdns.state == "disabled" && !snapshot.box.mdns.advertised)
            #expect(snapshot.storage.ring.sizeBytes == 1 << 20)
            #expect(snapshot.storage.durability == "os")

            // The same numbers as JSON, over HTTP.
            let body = try await api.json(.get, "/api/v1/operator/status", token: op)
            let sessions = try #require(body["sessions"] as? [[String: Any]])
            let town = try #require(sessions.first { $0["sessionId"] as? String == sessionId })
            #expect(town["participants"] as? Int == 3)
            #expect((town["streams"] as? [String: Int]) == ["websocket": 3, "sse": 1])
            #expect((town["openPoll"] as? [String: Any])?["question"] as? String == "Coffee or tea?")
            #expect((body["warnings"] as? [[String: Any]]) != nil)
            #expect((body["history"] as? [String: Any])?["intervalSeconds"] as? Int == 10)
        }
    }

    /// p50/p99 come from the server's own delivery-latency histogram, over the last minute only:
    /// deliveries older than the window do not count.
    @Test func latencyQuantilesComeFromTheHistogramOverTheLastMinute() async throws {
        let app = try await testApplication()
        let latency = app.streams.hub.metrics.deliveryLatency
        for _ in 0..<100 { latency.recordMilliseconds(3) }  // an old spell: 2–5 ms
        let start = ContinuousClock.now
        app.console.sample(at: start)
        for _ in 0..<100 { latency.recordMilliseconds(30) }  // the last minute: 20–50 ms
        let snapshot = app.console.snapshot(for: consoleRequest(), at: start + .seconds(61))
        #expect(snapshot.delivery.windowSeconds == 61)
        #expect(snapshot.delivery.latencyMs.deliveries == 100)
        #expect(snapshot.delivery.latencyMs.p50 == 35)  // 20 + 30 × 0.5
        #expect(snapshot.delivery.latencyMs.p99 == 49.7)  // 20 + 30 × 0.99
    }

    /// Every console watching gets the same tick's snapshot, built once, with its own join URL;
    /// the next tick builds a new one.
    @Test func streamsShareOneSnapshotPerTick() async throws {
        let app = try await testApplication()
        let start = ContinuousClock.now
        app.console.sample(at: start)
        let first = app.console.tickSnapshot(for: consoleRequest())
        app.streams.hub.metrics.deliveryLatency.recordMilliseconds(3)
        let other = Request(
            head: HTTPRequest(method: .get, scheme: "http", authority: "tally.local", path: "/api/v1/operator/status"),
            body: .init(buffer: ByteBuffer()))
        let second = app.console.tickSnapshot(for: other)
        #expect(second.at == first.at && second.delivery.latencyMs.deliveries == first.delivery.latencyMs.deliveries)
        #expect(first.box.joinUrl == "http://192.168.4.1:8080/" && second.box.joinUrl == "http://tally.local/")
        app.console.sample(at: start + .seconds(2))
        #expect(app.console.tickSnapshot(for: other).delivery.latencyMs.deliveries == 1, "a new tick, a new snapshot")
    }

    @Test func quantilesInterpolateWithinBuckets() {
        let then = [
            HistogramBucket(upperBound: 0.001, count: 0), HistogramBucket(upperBound: 0.01, count: 50),
            HistogramBucket(upperBound: 0.1, count: 50), HistogramBucket(upperBound: .infinity, count: 50),
        ]
        let now = [
            HistogramBucket(upperBound: 0.001, count: 10), HistogramBucket(upperBound: 0.01, count: 60),
            HistogramBucket(upperBound: 0.1, count: 150), HistogramBucket(upperBound: .infinity, count: 160),
        ]
        let window = Histograms.window(now: now, then: then)
        #expect(window.map(\.count) == [10, 10, 100, 110])
        // Rank 55 of 110: the 45th of the 90 in (0.01, 0.1] (10 lie at or below 0.001).
        #expect(abs(Histograms.quantile(0.5, of: window)! - (0.01 + 0.09 * 45 / 90)) < 1e-12)
        // Rank 108.9 lies in +Inf: the highest finite bound.
        #expect(Histograms.quantile(0.99, of: window) == 0.1)
        #expect(Histograms.quantile(0.5, of: Histograms.window(now: now, then: now)) == nil, "nothing delivered: no latency")
    }

    /// The console reads the same registry text `/metrics` serves.
    @Test func readingsParseTheRegistrysOwnOutput() throws {
        let metrics = ServerMetrics()
        metrics.refusedConnections.increment(by: 3)
        metrics.responded(429)
        metrics.responded(429)
        metrics.realtime.streams(.sse, .participant).increment()
        metrics.realtime.streams(.webSocket, .display).increment(by: 2)
        metrics.realtime.deliveryLatency.recordMilliseconds(7)
        var bytes: [UInt8] = []
        metrics.registry.emit(into: &bytes)
        let reading = MetricsReading(text: String(decoding: bytes, as: UTF8.self))
        #expect(reading.sum("tally_connections_refused_total") == 3)
        #expect(reading.sum("tally_http_rate_limited_total") == 2)
        #expect(reading.sum("tally_streams_open") == 3)
        #expect(reading.sum("tally_streams_open", matching: ["transport": "websocket"]) == 2)
        let buckets = reading.histogram("tally_delivery_latency_seconds")
        #expect(buckets.last?.upperBound == .infinity && buckets.last?.count == 1)
        #expect(buckets.first { $0.upperBound == 0.005 }?.count == 0)
        #expect(buckets.first { $0.upperBound == 0.01 }?.count == 1)
    }
}

@Suite("Operator console warnings")
struct ConsoleWarningTests {
    /// A healthy box: nothing to say.
    let calm = ApplianceFacts(
        now: Date(timeIntervalSince1970: 1_800_000_000), builtAt: Date(timeIntervalSince1970: 1_790_000_000),
        newestEvent: Date(timeIntervalSince1970: 1_799_999_990), diskFreeBytes: 40_000_000_000, diskTotalBytes: 64_000_000_000,
        ringLimitedByCapacity: false, oldestEventAge: 3600, retention: 24 * 3600,
        advertising: .init(phase: .advertised, name: "Tally on stage"), openFilesLimit: 65536, maxConnections: 20_000)

    private func codes(_ change: (inout ApplianceFacts) -> Void) -> [String] {
        var facts = calm
        change(&facts)
        return ConsoleWarnings.check(facts).map(\.code)
    }

    @Test func aHealthyBoxHasNoWarnings() {
        #expect(ConsoleWarnings.check(calm).isEmpty)
        #expect(
            codes { $0.advertising = .init(phase: .disabled, name: "x", reason: "mDNS is off (--no-mdns)") } == [],
            "off by choice is a state")
        #expect(codes { $0.advertising = .init(phase: .starting, name: "x") } == [])
    }

    /// A tiny ring: capacity, not age, decides how far back replay reaches.
    @Test func aFullRingThatReachesLessThanTheRetentionIsAWarning() throws {
        var facts = calm
        facts.ringLimitedByCapacity = true
        facts.oldestEventAge = 3 * 3600 + 60
        let warning = try #require(ConsoleWarnings.check(facts).first)
        #expect(warning.code == "replay-short")
        #expect(warning.message.hasPrefix("Replay reaches back only 3 h 1 min (the ring is full)"))
        #expect(warning.action.contains("ring-size in /etc/tally/tally.conf"))
        #expect(
            codes {
                $0.ringLimitedByCapacity = true
                $0.oldestEventAge = nil
            } == ["replay-short"], "nothing replayable at all")
        #expect(
            codes {
                $0.ringLimitedByCapacity = true
                $0.oldestEventAge = 25 * 3600
            } == [])
        #expect(codes { $0.oldestEventAge = 60 } == [], "a young ring that is not full reaches as far as there is")
    }

    @Test func aFillingDiskIsAWarning() throws {
        // Below 1 GiB, whatever the share; below 10 %, whatever the size.
        #expect(
            codes {
                $0.diskFreeBytes = 800_000_000
                $0.diskTotalBytes = 4_000_000_000
            } == ["disk-low"])
        #expect(
            codes {
                $0.diskFreeBytes = 2_500_000_000
                $0.diskTotalBytes = 252_000_000_000
            } == ["disk-low"])
        #expect(
            codes {
                $0.diskFreeBytes = 5_000_000_000
                $0.diskTotalBytes = 20_000_000_000
            } == [])
        var facts = calm
        facts.diskFreeBytes = 2_500_000_000
        facts.diskTotalBytes = 252_000_000_000
        #expect(ConsoleWarnings.check(facts)[0].message.contains("2.5 GB free (1.0 % of 252 GB)"))
    }

    @Test func anOpenFilesLimitBelowTheConnectionCapIsAWarning() throws {
        var facts = calm
        facts.openFilesLimit = 1024
        let warning = try #require(ConsoleWarnings.check(facts).first)
        #expect(warning.code == "open-files-low")
        #expect(warning.message.contains("(1,024) is below the connection cap (20,000"))
        #expect(warning.action.contains("LimitNOFILE"))
        #expect(codes { $0.openFilesLimit = 20_000 } == ["open-files-low"], "the box needs descriptors of its own too")
        #expect(codes { $0.openFilesLimit = 20_256 } == [])
    }

    /// A box without a real-time clock and no network boots in the past; a clock set later jumps.
    @Test func aWrongClockIsAWarning() throws {
        let early = codes { $0.now = Date(timeIntervalSince1970: 946_684_800) }  // 2000-01-01
        #expect(early == ["clock-before-build"])
        var facts = calm
        facts.now = Date(timeIntervalSince1970: 946_684_800)
        #expect(ConsoleWarnings.check(facts)[0].message.contains("it says 2000-01-01, before this software was built (2026-09-21)"))
        #expect(codes { $0.newestEvent = $0.now.addingTimeInterval(3600) } == ["clock-went-back"])
        #expect(
            codes { $0.newestEvent = $0.now.addingTimeInterval(2) } == [], "stamps are clamped: a second or two is not a clock gone back")
        #expect(codes { $0.clockJump = (7200, $0.now) } == ["clock-jumped"])
        #expect(ConsoleWarnings.clockJump(wallElapsed: 3602, monotonicElapsed: 2) == 3600)
        #expect(ConsoleWarnings.clockJump(wallElapsed: -58, monotonicElapsed: 2) == -60)
        #expect(ConsoleWarnings.clockJump(wallElapsed: 2.4, monotonicElapsed: 2) == nil)
    }

    @Test func avahiUnreachableIsAWarningWithItsReason() throws {
        var facts = calm
        facts.advertising = .init(phase: .unreachable, name: "Tally on stage", reason: "avahi-daemon is not running")
        let warning = try #require(ConsoleWarnings.check(facts).first)
        #expect(warning.code == "mdns-unreachable")
        #expect(warning.message.contains("avahi-daemon is not running"))
        #expect(warning.message.contains("\"Tally on stage\""))
    }

    @Test func wordsForPeople() {
        #expect(ConsoleWarnings.duration(40) == "40 s")
        #expect(ConsoleWarnings.duration(45 * 60) == "45 min")
        #expect(ConsoleWarnings.duration(3 * 3600) == "3 h")
        #expect(ConsoleWarnings.duration(26 * 3600) == "1 day 2 h")
        #expect(ConsoleWarnings.duration(72 * 3600) == "3 days")
        #expect(ConsoleWarnings.bytes(812_000_000) == "812 MB")
        #expect(ConsoleWarnings.grouped(1_234_567) == "1,234,567")
        #expect(ConsoleWarnings.grouped(999) == "999")
    }
}
