import CoreMetrics
import Foundation
import TallyDomain

/// The instruments of `/events`, made on the factory the server exports at `/metrics`.
/// Every delivery, on either transport, is counted and timed here and nowhere else.
public final class RealtimeMetrics: Sendable {
    /// Open event streams by transport and role.
    private let streams: [String: Meter]
    public let eventsPublished: CoreMetrics.Counter
    public let deliveries: CoreMetrics.Counter
    /// Events waiting in SSE stream queues, across all streams.
    public let queued: Meter
    public let slowConsumers: CoreMetrics.Counter
    public let replays: CoreMetrics.Counter
    public let resets: CoreMetrics.Counter
    /// From an event's publication (durable, handed to fan-out) to its write on a socket.
    public let deliveryLatency: CoreMetrics.Timer
    /// How long one event loop spends writing one batch to all its connections.
    public let fanoutBatch: CoreMetrics.Timer

    /// Histogram buckets the factory should use for the two timers.
    public static let fanoutBatchLabel = "tally_fanout_batch_seconds"
    public static let deliveryLatencyLabel = "tally_delivery_latency_seconds"

    public init(factory: any MetricsFactory) {
        var streams: [String: Meter] = [:]
        for transport in Transport.allCases {
            for role in Role.allCases {
                streams["\(transport.rawValue)/\(role.rawValue)"] = Meter(
                    label: "tally_streams_open", dimensions: [("transport", transport.rawValue), ("role", role.rawValue)],
                    factory: factory)
            }
        }
        self.streams = streams
        eventsPublished = Counter(label: "tally_events_published_total", factory: factory)
        deliveries = Counter(label: "tally_deliveries_total", factory: factory)
        queued = Meter(label: "tally_stream_queue_depth", factory: factory)
        slowConsumers = Counter(label: "tally_slow_consumer_disconnects_total", factory: factory)
        replays = Counter(label: "tally_stream_replays_total", factory: factory)
        resets = Counter(label: "tally_stream_resets_total", factory: factory)
        deliveryLatency = Timer(label: Self.deliveryLatencyLabel, factory: factory)
        fanoutBatch = Timer(label: Self.fanoutBatchLabel, factory: factory)
    }

    public func streams(_ transport: Transport, _ role: Role) -> Meter {
        streams["\(transport.rawValue)/\(role.rawValue)"]!
    }

    /// `count` events written to sockets; the oldest was published at `publishedAt`.
    func delivered(_ count: Int, oldestPublishedAt: UInt64, now: UInt64 = DispatchTime.now().uptimeNanoseconds) {
        guard count > 0 else { return }
        deliveries.increment(by: Int64(count))
        deliveryLatency.recordNanoseconds(Int64(now &- oldestPublishedAt))
    }
}

/// How a stream reaches its client.
public enum Transport: String, Sendable, CaseIterable {
    case webSocket = "websocket"
    case sse
}
