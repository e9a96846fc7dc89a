import CoreMetrics
import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Synchronization
import TallyDomain
import Testing

@testable import TallyEventLog
@testable import TallyRealtime

/// A sink that records what the hub hands it: the hub's routing is what is under test here
/// (the real sinks have their own tests below).
final class RecordingSink: EventSink, @unchecked Sendable {
    let eventLoop: any EventLoop
    private let lock = NSLock()
    private var _received: [UInt64] = []
    private var _closed: StreamEnd?
    var slow = false

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    var received: [UInt64] { lock.withLock { _received } }
    var closed: StreamEnd? { lock.withLock { _closed } }

    func deliver(_ events: [EncodedEvent]) -> Delivery {
        eventLoop.preconditionInEventLoop()
        lock.withLock { _received += events.map(\.sequence) }
        return Delivery(written: events.count, tooSlow: slow)
    }
    func keepAlive(stallLimit: Duration) -> Delivery { Delivery() }
    func close(_ reason: StreamEnd) { lock.withLock { _closed = reason } }
}

private func logged(_ sequence: UInt64, _ session: SessionID, _ event: SessionEvent) -> LoggedEvent {
    LoggedEvent(sequence: sequence, sessionId: session, timestamp: Date(), event: event)
}

/// Events with different audiences: the joining switch reaches everyone, a draft poll only the presenter.
private let everyone = SessionEvent.joiningChanged(.init(joiningOpen: false))
private let presenterOnly = SessionEvent.pollCreated(
    .init(
        poll: Poll(
            id: "p1", question: "Lunch?", options: [.init(id: "a", label: "Yes"), .init(id: "b", label: "No")], kind: .single,
            resultsVisibility: .live)))

private func metrics() -> RealtimeMetrics { RealtimeMetrics(factory: NOOPMetricsHandler.instance) }

@Suite struct HubRoutingTests {
    @Test func eventsReachOnlyTheirSessionAndTheRolesInTheirAudience() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        let presenter = RecordingSink(eventLoop: loop)
        let participant = RecordingSink(eventLoop: loop)
        let otherRoom = RecordingSink(eventLoop: loop)
        _ = try #require(try hub.subscribe(sessionId: "s1", role: .presenter, sink: presenter))
        _ = try #require(try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: participant))
        _ = try #require(try hub.subscribe(sessionId: "s2", role: .presenter, sink: otherRoom))

        hub.publish([logged(1, "s1", everyone), logged(2, "s1", presenterOnly), logged(3, "s2", everyone)])
        hub.settle()
        loop.run()

        #expect(presenter.received == [1, 2])
        #expect(participant.received == [1], "a draft poll never reaches a participant")
        #expect(otherRoom.received == [3])
    }

    @Test func aParticipantMayHoldOnlyAFewStreams() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        var held: [Subscription] = []
        for _ in 0..<EventHub.streamsPerParticipant {
            held.append(try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: RecordingSink(eventLoop: loop)).0)
        }
        #expect(throws: EventHub.Refusal.self) {
            try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: RecordingSink(eventLoop: loop))
        }
        hub.unsubscribe(held[0])
        hub.unsubscribe(held[0])  // twice: the connection closed and the writer ended
        _ = try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: RecordingSink(eventLoop: loop))
        #expect(hub.connectionCount == EventHub.streamsPerParticipant)
        // Another cap, for streams that have no participant (displays on a join code, per address).
        for _ in 0..<2 {
            _ = try hub.subscribe(
                sessionId: "s1", role: .display, group: (key: "join-code@10.0.0.7", limit: 2), sink: RecordingSink(eventLoop: loop))
        }
        #expect(throws: EventHub.Refusal.self) {
            try hub.subscribe(
                sessionId: "s1", role: .display, group: (key: "join-code@10.0.0.7", limit: 2), sink: RecordingSink(eventLoop: loop))
        }
    }

    @Test func aSinkThatFallsBehindIsEndedAsASlowConsumerOnce() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        let slow = RecordingSink(eventLoop: loop)
        slow.slow = true
        let (subscription, _) = try hub.subscribe(sessionId: "s1", role: .display, sink: slow)
        hub.publish([logged(1, "s1", everyone)])
        hub.publish([logged(2, "s1", everyone)])
        hub.settle()
        loop.run()
        #expect(slow.closed == .slowConsumer)
        #expect(subscription.endReason == .slowConsumer)
    }

    @Test func endingByCredentialTouchesOnlyTheStreamsOpenedWithIt() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        let rotated = RecordingSink(eventLoop: loop)
        let kept = RecordingSink(eventLoop: loop)
        _ = try hub.subscribe(sessionId: "s1", role: .display, credential: "display-link", sink: rotated)
        _ = try hub.subscribe(sessionId: "s1", role: .presenter, credential: "operator", sink: kept)
        let ended = hub.end(.revoked, sessionId: "s1") { ($0.credential as? String) == "display-link" }
        #expect(ended == 1)
        #expect(rotated.closed == .revoked)
        #expect(kept.closed == nil)
    }

    @Test func aStreamSubscribedAfterABatchFindsItInTheReplayCache() async throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        hub.publish([logged(1, "s1", everyone), logged(2, "s1", presenterOnly), logged(3, "s1", everyone)])
        hub.settle()
        let (_, published) = try hub.subscribe(sessionId: "s1", role: .display, sink: RecordingSink(eventLoop: loop))
        #expect(published == 3)
        let replay = try #require(
            await hub.replay(sessionId: "s1", role: .display, after: 1, through: published, log: NoLog(), retention: 3600))
        #expect(replay.map(\.sequence) == [3], "from memory, filtered by role exactly as live")
    }
}

/// Quiz scores: each addressed to one participant, who alone receives it — live, replayed from
/// memory, and replayed from the log.
@Suite struct OneParticipantAudienceTests {
    static func score(_ participant: ParticipantID) -> SessionEvent {
        .quizScore(
            .init(participantId: participant, pollId: "q1", answered: true, correct: true, points: 900, total: 900, rank: 1, players: 2))
    }
    static let batch = [logged(1, "s1", everyone), logged(2, "s1", score("u1")), logged(3, "s1", score("u2"))]

    @Test func liveDeliveryReachesTheAddresseeAlone() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        let sinks = (0..<5).map { _ in RecordingSink(eventLoop: loop) }
        _ = try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: sinks[0])
        _ = try hub.subscribe(sessionId: "s1", role: .participant, participant: "u1", sink: sinks[1])  // a second tab
        _ = try hub.subscribe(sessionId: "s1", role: .participant, participant: "u2", sink: sinks[2])
        _ = try hub.subscribe(sessionId: "s1", role: .presenter, sink: sinks[3])
        _ = try hub.subscribe(sessionId: "s1", role: .display, sink: sinks[4])
        hub.publish(Self.batch)
        hub.settle()
        loop.run()
        #expect(sinks.map(\.received) == [[1, 2], [1, 2], [1, 3], [1], [1]])
    }

    @Test func aCloseOfManyPlayersStaysInMemoryWithWhatCameBefore() {
        let cache = ReplayCache(firstLive: 1, capacity: 8)
        let wire = WireFormat(epoch: "ab")
        var batch = [("s1", wire.encode(logged(1, "s1", everyone)))]
        for i in 0..<50 { batch.append(("s1", wire.encode(logged(UInt64(i + 2), "s1", Self.score("u\(i)"))))) }
        cache.record(batch)
        let held = cache.events(of: "s1", after: 0, through: 51, notBefore: .distantPast)
        #expect(held?.count == 51, "scores count against the bytes, not against the 8 events")
    }

    @Test func replayFromMemoryAndFromTheLogKeepsEachScoreToItsOwner() async throws {
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        hub.publish(Self.batch)
        hub.settle()
        func replayed(_ hub: EventHub, _ role: Role, _ participant: ParticipantID?, log: any EventLog) async -> [UInt64]? {
            await hub.replay(sessionId: "s1", role: role, participant: participant, after: 0, through: 3, log: log, retention: 3600)?.map(
                \.sequence)
        }
        #expect(await replayed(hub, .participant, "u1", log: NoLog()) == [1, 2])
        #expect(await replayed(hub, .participant, "u2", log: NoLog()) == [1, 3])
        #expect(await replayed(hub, .display, nil, log: NoLog()) == [1])
        // A hub started after these events: its memory has none of them, the log has them all.
        let later = EventHub(epoch: "ab", publishedThrough: 3, metrics: metrics())
        let log = ListLog(Self.batch)
        #expect(await replayed(later, .participant, "u1", log: log) == [1, 2])
        #expect(await replayed(later, .participant, "u3", log: log) == [1])
        #expect(await replayed(later, .presenter, nil, log: log) == [1])
    }
}

/// A log holding a fixed list of events.
private final class ListLog: EventLog {
    let stored: [LoggedEvent]
    init(_ stored: [LoggedEvent]) { self.stored = stored }
    var epoch: String { "ab" }
    var durableSequence: UInt64 { stored.last?.sequence ?? 0 }
    var failure: (any Error)? { nil }
    func append(sessionId: SessionID, events: [SessionEvent]) throws -> [LoggedEvent] { [] }
    func waitUntilDurable(_ sequence: UInt64) async throws {}
    func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void) {}
    func events(of sessionId: SessionID, after: UInt64, through: UInt64) -> [LoggedEvent]? {
        stored.filter { $0.sessionId == sessionId && $0.sequence > after && $0.sequence <= through }
    }
    func reach() -> LogReach { LogReach(newestSequence: durableSequence, retainedEvents: stored.count, limitedByCapacity: false) }
}

/// A log that holds nothing: a replay that reaches it could not be served from memory.
private final class NoLog: EventLog {
    var epoch: String { "ab" }
    var durableSequence: UInt64 { 0 }
    var failure: (any Error)? { nil }
    func append(sessionId: SessionID, events: [SessionEvent]) throws -> [LoggedEvent] { [] }
    func waitUntilDurable(_ sequence: UInt64) async throws {}
    func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void) {}
    func events(of sessionId: SessionID, after: UInt64, through: UInt64) -> [LoggedEvent]? { nil }
    func reach() -> LogReach { LogReach(newestSequence: 0, retainedEvents: 0, limitedByCapacity: false) }
}

@Suite struct HubShutdownTests {
    @Test func onceShuttingDownNoStreamIsOpenedAndTheOpenOnesEnd() throws {
        let loop = EmbeddedEventLoop()
        let hub = EventHub(epoch: "ab", publishedThrough: 0, metrics: metrics())
        let open = RecordingSink(eventLoop: loop)
        _ = try hub.subscribe(sessionId: "s1", role: .display, sink: open)
        hub.endAll()
        #expect(open.closed == .shutdown)
        #expect(throws: EventHub.Refusal.self) {
            try hub.subscribe(sessionId: "s1", role: .display, sink: RecordingSink(eventLoop: loop))
        }
    }

    @Test func aSessionSeenAgainAfterAnEvictionIsReplayedFromTheLogNotPartlyFromMemory() {
        let cache = ReplayCache(firstLive: 1, capacity: 8, sessions: 1)
        let wire = WireFormat(epoch: "ab")
        cache.record([("s1", wire.encode(logged(1, "s1", everyone))), ("s1", wire.encode(logged(2, "s1", everyone)))])
        cache.record([("s2", wire.encode(logged(3, "s2", everyone)))])  // evicts s1
        cache.record([("s1", wire.encode(logged(4, "s1", everyone)))])  // evicts s2; s1 is back without 2
        #expect(cache.events(of: "s1", after: 1, through: 4, notBefore: .distantPast) == nil, "2 is not here: go to the log")
        #expect(cache.events(of: "s1", after: 3, through: 4, notBefore: .distantPast)?.map(\.sequence) == [4])
    }

    /// Large events (a word cloud's results) are bounded by bytes, not only by count: the oldest
    /// go, and a replay from before them goes to the log.
    @Test func aSessionsMemoryIsBoundedInBytes() {
        let wire = WireFormat(epoch: "ab")
        let one = wire.encode(logged(1, "s1", everyone))
        let size = one.sse.readableBytes + one.frame.readableBytes
        let cache = ReplayCache(firstLive: 1, capacity: 100, sessions: 1, maxBytes: size * 3 + 16)  // later ids are a digit longer
        for sequence in 1...10 { cache.record([("s1", wire.encode(logged(UInt64(sequence), "s1", everyone)))]) }
        #expect(cache.events(of: "s1", after: 7, through: 10, notBefore: .distantPast)?.map(\.sequence) == [8, 9, 10])
        #expect(cache.events(of: "s1", after: 6, through: 10, notBefore: .distantPast) == nil, "7 is gone: go to the log")
    }
}

@Suite struct WireFormatTests {
    @Test func anEventIsTheADREnvelopeInBothFramings() throws {
        let wire = WireFormat(epoch: "ab12")
        let event = wire.encode(logged(7, "s1", everyone))
        let sse = String(buffer: event.sse)
        #expect(sse.hasPrefix("id: ab12-7\nevent: session.joining\ndata: {"))
        #expect(sse.hasSuffix("}\n\n"))
        // The WebSocket frame: FIN + text, unmasked, then the same JSON as the SSE data line.
        var frame = event.frame
        #expect(frame.readInteger(as: UInt8.self) == 0x81)
        var length = Int(frame.readInteger(as: UInt8.self) ?? 0)
        if length == 126 { length = Int(frame.readInteger(as: UInt16.self) ?? 0) }
        let json = frame.readString(length: length) ?? ""
        #expect(frame.readableBytes == 0)
        #expect(sse.contains(json))
        let envelope = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(envelope["eventId"] as? String == "ab12-7")
        #expect(envelope["sessionId"] as? String == "s1")
        #expect(envelope["eventType"] as? String == "session.joining")
    }

    /// The log stores whole milliseconds; the envelope must print exactly those (a quiz's close
    /// stamped in its deadline's millisecond must not read as a millisecond before it).
    @Test func timestampsPrintTheMillisecondTheLogStored() {
        let start: Int64 = 1_764_716_290_000
        for ms in stride(from: start, to: start + 5_000, by: 1) {
            let printed = WireFormat.formatTimestamp(Date(timeIntervalSince1970: Double(ms) / 1000))
            #expect(EventTime.parse(printed) == ms, "\(ms) printed as \(printed)")
        }
        #expect(WireFormat.formatTimestamp(Date(timeIntervalSince1970: 1_764_716_290.123)) == "2025-12-02T22:58:10.123Z")
    }

    @Test func closeReasonsAreCutToAControlFrameOnACharacterBoundary() {
        var frame = WireFormat.closeFrame(code: 4401, reason: String(repeating: "é", count: 100))
        #expect(frame.readInteger(as: UInt8.self) == 0x88)
        let length = Int(frame.readInteger(as: UInt8.self)!)
        #expect(length <= 125)
        #expect(frame.readInteger(as: UInt16.self) == 4401)
        #expect(String(validating: frame.readBytes(length: length - 2)!, as: UTF8.self) != nil)
    }

    @Test func largeEventsUseTheExtendedLength() {
        var frame = WireFormat.frame(opcode: 0x1, payload: [UInt8](repeating: 0x20, count: 70_000))
        #expect(frame.readInteger(as: UInt8.self) == 0x81)
        #expect(frame.readInteger(as: UInt8.self) == 127)
        #expect(frame.readInteger(as: UInt64.self) == 70_000)
    }
}

@Suite struct WebSocketStreamTests {
    private func stream() throws -> (EmbeddedChannel, WebSocketStreamHandler) {
        let handler = WebSocketStreamHandler(pingInterval: .seconds(30), unwritableLimit: 4, logger: .init(label: "test"))
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, handler)
    }

    private func written(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { frames.append(buffer) }
        return frames
    }

    @Test func eventsDeliveredBeforeTheBacklogIsWrittenFollowItWithoutGapOrDuplicate() throws {
        let (channel, handler) = try stream()
        let wire = WireFormat(epoch: "ab")
        let events = (1...5).map { wire.encode(logged($0, "s1", everyone)) }
        // Live events 4 and 5 arrive while the replay (1...4) is still being read.
        _ = handler.deliver(Array(events[3...4]))
        #expect(try written(channel).isEmpty, "held until the backlog is out")
        _ = handler.goLive(backlog: Array(events[0...3]), cursor: 4)
        let frames = try written(channel)
        #expect(frames == [events[0].frame, events[1].frame, events[2].frame, events[3].frame, events[4].frame])
        _ = handler.deliver([events[4]])
        #expect(try written(channel).isEmpty, "the cursor has passed 5")
    }

    @Test func aClientPingIsAnsweredAndAMessageClosesTheStreamWith1008() throws {
        let (channel, _) = try stream()
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "hi")))
        var pong = try #require(try written(channel).first)
        #expect(pong.readInteger(as: UInt8.self) == 0x8A)
        #expect(pong.readInteger(as: UInt8.self) == 2)
        #expect(pong.readString(length: 2) == "hi")

        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "hello?")))
        var close = try #require(try written(channel).first)
        #expect(close.readInteger(as: UInt8.self) == 0x88)
        _ = close.readInteger(as: UInt8.self)
        #expect(close.readInteger(as: UInt16.self) == 1008)
    }

    @Test func pingsGoUnansweredWhileTheSocketIsFull() throws {
        let (channel, _) = try stream()
        channel.isWritable = false
        for _ in 0..<100 { try channel.writeInbound(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "x"))) }
        #expect(try written(channel).isEmpty, "no pongs pile up for a client that does not read")
    }

    @Test func afterTheCloseFrameNothingMoreIsWritten() throws {
        let (channel, handler) = try stream()
        _ = handler.goLive(backlog: [], cursor: 0)
        handler.close(code: 1001, reason: "server shutting down", grace: .seconds(2))
        _ = try written(channel)
        let delivery = handler.deliver([WireFormat(epoch: "ab").encode(logged(1, "s1", everyone))])
        #expect(delivery.written == 0)
        #expect(try written(channel).isEmpty)
    }
}
