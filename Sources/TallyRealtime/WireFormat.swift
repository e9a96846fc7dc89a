import Foundation
import NIOCore
import TallyDomain
import TallyEventLog

/// One event encoded for the wire, once, and shared by every connection that receives it.
public struct EncodedEvent: Sendable {
    public let sequence: UInt64
    public let audience: Audience
    /// The same envelope as an SSE frame (`id:`, `event:`, `data:`).
    public let sse: ByteBuffer
    /// The same envelope as a complete WebSocket text frame (server frames are unmasked), so
    /// the bytes on the wire are built once, not once per connection.
    public let frame: ByteBuffer
    /// When it was handed to fan-out (monotonic ns), for the delivery-latency histogram.
    public let publishedAt: UInt64
    /// The event's own time (replay from memory honours retention by it).
    public let timestamp: Date
    /// It takes back from the room something it was shown (`SessionEvent.retractsFromRoom`).
    public var retracts = false
}

/// Every byte `/events` puts on the wire, in one place: the ADR's JSON envelope, its SSE and
/// WebSocket framings, and the WebSocket control frames. Nothing else builds frames.
public struct WireFormat: Sendable {
    /// The log's epoch: the first half of every event id.
    public let epoch: String

    public init(epoch: String) { self.epoch = epoch }

    public func eventId(_ sequence: UInt64) -> String {
        EventID(epoch: epoch, sequence: sequence).description
    }

    public func encode(_ logged: LoggedEvent) -> EncodedEvent {
        var encoded = encode(
            sequence: logged.sequence, type: logged.event.type, timestamp: logged.timestamp, sessionId: logged.sessionId,
            payload: logged.event.publicPayload, audience: logged.event.audience)
        encoded.retracts = logged.event.retractsFromRoom
        return encoded
    }

    /// `stream.reset`: the client's position cannot be served; here is the whole state instead.
    public func encodeReset(sessionId: SessionID, view: some Encodable & Sendable, through sequence: UInt64) -> EncodedEvent {
        encode(sequence: sequence, type: "stream.reset", timestamp: Date(), sessionId: sessionId, payload: view, audience: .everyone)
    }

    private func encode(
        sequence: UInt64, type: String, timestamp: Date, sessionId: SessionID, payload: any Encodable, audience: Audience
    ) -> EncodedEvent {
        let id = eventId(sequence)
        let envelope = Envelope(
            eventId: id, eventType: type, timestamp: Self.formatTimestamp(timestamp), sessionId: sessionId, payload: payload)
        // Encoding our own value types cannot fail; an empty object keeps the stream alive if it ever did.
        let json = (try? Self.json.encode(envelope)) ?? Data("{}".utf8)
        var sse = ByteBuffer()
        sse.reserveCapacity(json.count + id.utf8.count + type.utf8.count + 24)
        sse.writeString("id: \(id)\nevent: \(type)\ndata: ")
        sse.writeBytes(json)
        sse.writeString("\n\n")
        return EncodedEvent(
            sequence: sequence, audience: audience, sse: sse, frame: Self.frame(opcode: Self.text, payload: json),
            publishedAt: DispatchTime.now().uptimeNanoseconds, timestamp: timestamp)
    }

    /// RFC 3339 with milliseconds, UTC (`2026-12-02T13:36:33.123Z`).
    public static func formatTimestamp(_ date: Date) -> String {
        // The log's times are whole milliseconds: rounding recovers them exactly.
        EventTime.format(Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }

    /// The appliance's one JSON style (events and API responses alike): sorted keys, stable
    /// and diffable in logs, tests and browser tools. One shared instance: `encode` is
    /// thread-safe, and making an encoder per event would be work on the fan-out path.
    public static let json: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    // MARK: Server-Sent Events

    /// The first bytes of every SSE stream: how long a browser waits before reconnecting.
    public static let sseOpening = ByteBuffer(string: "retry: 1000\n\n")
    /// A comment line: keeps proxies and the browser from timing the stream out.
    public static let sseHeartbeat = ByteBuffer(string: ":\n\n")

    // MARK: WebSocket (RFC 6455), server to client: never masked

    static let text: UInt8 = 0x1
    static let close: UInt8 = 0x8
    static let ping: UInt8 = 0x9
    static let pong: UInt8 = 0xA

    public static let pingFrame = frame(opcode: ping, payload: [])

    public static func pongFrame(echoing payload: ByteBuffer) -> ByteBuffer {
        frame(opcode: pong, payload: Array(payload.readableBytesView.prefix(125)))
    }

    /// A close frame: the code, then a reason of at most 123 bytes (control frames carry ≤ 125),
    /// cut on a character boundary.
    public static func closeFrame(code: UInt16, reason: String) -> ByteBuffer {
        let utf8 = Array(reason.utf8)
        var end = min(utf8.count, 123)
        while end > 0, end < utf8.count, utf8[end] & 0xC0 == 0x80 { end -= 1 }  // not inside a character
        return frame(opcode: close, payload: [UInt8(code >> 8), UInt8(code & 0xFF)] + utf8[..<end])
    }

    static func frame(opcode: UInt8, payload: some Collection<UInt8>) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(payload.count + 10)
        frame.writeInteger(0x80 | opcode)  // FIN
        if payload.count < 126 {
            frame.writeInteger(UInt8(payload.count))
        } else if payload.count <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(payload.count))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(payload.count))
        }
        frame.writeBytes(payload)
        return frame
    }
}

/// The JSON envelope of the ADR: `{eventId, eventType, timestamp, sessionId, payload}`.
struct Envelope: Encodable {
    let eventId: String
    let eventType: String
    let timestamp: String
    let sessionId: String
    let payload: any Encodable

    enum CodingKeys: String, CodingKey { case eventId, eventType, timestamp, sessionId, payload }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventId, forKey: .eventId)
        try c.encode(eventType, forKey: .eventType)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(sessionId, forKey: .sessionId)
        try payload.encode(to: c.superEncoder(forKey: .payload))
    }
}
