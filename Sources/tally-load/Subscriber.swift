import Foundation
import NIOCore
import NIOPosix

/// What one simulated phone has seen. Confined to the client's single event loop (every
/// handler runs there), which is why it can be unchecked-Sendable without locks.
final class Tracker: @unchecked Sendable {
    let session: Int
    /// The participant token it subscribes with (set before it first connects).
    var token: String?
    var lastSequence: UInt64 = 0
    /// The epoch part of event ids ("<epoch>-<sequence>"), the same for every event of a server.
    var epoch: String?
    var lastEventId: String? { epoch.map { "\($0)-\(lastSequence)" } }
    /// Index of the last stamped publication seen (publications are numbered per session).
    var lastIndex = -1
    var uniqueStamped = 0
    var duplicates = 0
    var outOfOrder = 0
    var connected = false
    var upgradeFailures = 0
    var closeCodes: [UInt16] = []
    /// Set while a reconnect is measured: when the client caught up, and the index it needed.
    var catchUpTarget: Int?
    var catchUpStarted: UInt64 = 0
    var caughtUpAfter: UInt64?
    var channel: (any Channel)?
    /// When set, every message is also handed here with its arrival time (scenarios that read
    /// payloads, like the word cloud's display).
    var onMessage: ((ByteBuffer, UInt64) -> Void)?

    init(session: Int) { self.session = session }
}

/// Latencies and counts for a run, on the client's event loop.
final class Collector: @unchecked Sendable {
    var latenciesMicros: [UInt32] = []
    var delivered = 0
    var recording = true

    func reset() {
        latenciesMicros.removeAll(keepingCapacity: true)
        delivered = 0
    }
}

@inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// A WebSocket client written directly on bytes: the upgrade request, unmasked server frames,
/// pongs. No HTTP codec, no per-message task — the load client must cost less than the server.
final class SubscriberHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let tracker: Tracker
    private let collector: Collector
    private let request: String
    private var upgraded = false
    private var buffer = ByteBuffer()

    init(tracker: Tracker, collector: Collector, host: String, path: String) {
        self.tracker = tracker
        self.collector = collector
        self.request =
            "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    func channelActive(context: ChannelHandlerContext) {
        tracker.channel = context.channel
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        tracker.connected = false
        tracker.channel = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer.readableBytes == 0 {
            buffer = incoming  // the common case: parse the read in place, no copy
        } else {
            buffer.writeBuffer(&incoming)
        }
        if !upgraded {
            let view = buffer.readableBytesView
            guard let end = view.firstRange(of: [13, 10, 13, 10]) else { return }
            let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
            buffer.moveReaderIndex(forwardBy: end.upperBound - view.startIndex)
            guard head.hasPrefix("HTTP/1.1 101") else {
                tracker.upgradeFailures += 1
                context.close(promise: nil)
                return
            }
            upgraded = true
            tracker.connected = true
        }
        parseFrames(context)
        if buffer.readableBytes == 0 {
            buffer = ByteBuffer()  // let the read buffer go back to the allocator
        } else {
            buffer.discardReadBytes()
        }
    }

    private func parseFrames(_ context: ChannelHandlerContext) {
        while buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let b0 = buffer.getInteger(at: start, as: UInt8.self)!
            let b1 = buffer.getInteger(at: start + 1, as: UInt8.self)!
            var length = Int(b1 & 0x7F)
            var header = 2
            if length == 126 {
                guard buffer.readableBytes >= 4 else { return }
                length = Int(buffer.getInteger(at: start + 2, as: UInt16.self)!)
                header = 4
            } else if length == 127 {
                guard buffer.readableBytes >= 10 else { return }
                length = Int(buffer.getInteger(at: start + 2, as: UInt64.self)!)
                header = 10
            }
            guard buffer.readableBytes >= header + length else { return }
            let payload = buffer.getSlice(at: start + header, length: length)!
            buffer.moveReaderIndex(forwardBy: header + length)
            switch b0 & 0x0F {
            case 0x1, 0x2: text(payload)  // nchan may send a message as a binary frame
            case 0x9: reply(context, opcode: 0xA, payload: payload)  // ping → pong
            case 0x8:
                let code = payload.readableBytes >= 2 ? payload.getInteger(at: payload.readerIndex, as: UInt16.self)! : 1005
                tracker.closeCodes.append(code)
                reply(context, opcode: 0x8, payload: payload.getSlice(at: payload.readerIndex, length: min(2, payload.readableBytes))!)
                context.close(promise: nil)
                return
            default: break
            }
        }
    }

    /// Client frames must be masked; an all-zero key is valid and leaves the payload as is.
    private func reply(_ context: ChannelHandlerContext, opcode: UInt8, payload: ByteBuffer) {
        var frame = context.channel.allocator.buffer(capacity: 6 + payload.readableBytes)
        frame.writeInteger(0x80 | opcode)
        frame.writeInteger(0x80 | UInt8(payload.readableBytes))
        frame.writeInteger(UInt32(0))
        frame.writeImmutableBuffer(payload)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private static let eventIdKey = Array(#""eventId":""#.utf8)
    private static let stampKey = Array(#""question":"L"#.utf8)

    private func text(_ payload: ByteBuffer) {
        let arrived = now()
        collector.delivered += 1
        tracker.onMessage?(payload, arrived)
        payload.withUnsafeReadableBytes { bytes in
            // "eventId":"<epoch>-<sequence>"
            if let start = search(bytes, Self.eventIdKey) {
                var i = start
                var idEnd = i
                while idEnd < bytes.count, bytes[idEnd] != UInt8(ascii: "\"") { idEnd += 1 }
                let idStart = i
                while i < idEnd, bytes[i] != UInt8(ascii: "-") { i += 1 }
                if tracker.epoch == nil {
                    tracker.epoch = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[idStart..<i]), as: UTF8.self)
                }
                var sequence: UInt64 = 0
                i += 1
                while i < idEnd {
                    sequence = sequence * 10 + UInt64(bytes[i] &- 48)
                    i += 1
                }
                if sequence <= tracker.lastSequence {
                    if sequence == tracker.lastSequence { tracker.duplicates += 1 } else { tracker.outOfOrder += 1 }
                }
                tracker.lastSequence = max(tracker.lastSequence, sequence)
            }
            // The publisher stamps each quick poll's question "L<index>:<scheduled ns>".
            if let start = search(bytes, Self.stampKey) {
                var i = start
                var index = 0
                while bytes[i] != UInt8(ascii: ":") {
                    index = index * 10 + Int(bytes[i] &- 48)
                    i += 1
                }
                i += 1
                var scheduled: UInt64 = 0
                while bytes[i] != UInt8(ascii: "\"") {
                    scheduled = scheduled * 10 + UInt64(bytes[i] &- 48)
                    i += 1
                }
                if index > tracker.lastIndex {
                    tracker.uniqueStamped += 1
                    tracker.lastIndex = index
                }
                if collector.recording {
                    collector.latenciesMicros.append(UInt32(clamping: (arrived &- scheduled) / 1000))
                }
                if let target = tracker.catchUpTarget, index >= target, tracker.caughtUpAfter == nil {
                    tracker.caughtUpAfter = arrived &- tracker.catchUpStarted
                }
            }
        }
    }
}

/// Where `needle` ends in `bytes` (the index just after it), by a plain scan: the generic
/// `firstRange(of:)` costs more than the server's whole delivery.
@inline(__always)
func search(_ bytes: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Int? {
    let first = needle[0]
    let n = needle.count
    guard bytes.count >= n else { return nil }
    var i = 0
    let last = bytes.count - n
    outer: while i <= last {
        if bytes[i] == first {
            var j = 1
            while j < n {
                if bytes[i + j] != needle[j] {
                    i += 1
                    continue outer
                }
                j += 1
            }
            return i + n
        }
        i += 1
    }
    return nil
}

/// Opens subscriber connections on the client's event loop.
struct Connector {
    let group: any EventLoopGroup
    let host: String
    let port: Int
    let collector: Collector

    func connect(_ tracker: Tracker, path: String, stalled: Bool = false) -> EventLoopFuture<any Channel> {
        let host = self.host
        let port = self.port
        let collector = self.collector
        return ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: !stalled)
            // Fixed 16 KiB reads: the adaptive allocator grows to 64 KiB after a replay burst
            // and then mallocs that much on every read.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16384))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        SubscriberHandler(tracker: tracker, collector: collector, host: "\(host):\(port)", path: path))
                }
            }
            .connect(host: host, port: port)
    }
}
