import CoreMetrics
import Foundation
import Hummingbird
import NIOCore
import Prometheus
import TallyDomain
import TallyRealtime

/// The appliance's instruments, exposed at `GET /metrics` in Prometheus text format.
///
/// Made with swift-metrics types over an explicit Prometheus factory (not the global
/// `MetricsSystem`), so each server instance — and each test — has its own registry.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    /// TCP connections open now, of every kind.
    let connections: Meter
    let refusedConnections: CoreMetrics.Counter
    let headerTimeouts: CoreMetrics.Counter
    let oversizedHeads: CoreMetrics.Counter
    /// Streams, deliveries, replays: the real-time module's own instruments, in this registry.
    let realtime: RealtimeMetrics
    let votes: CoreMetrics.Counter
    /// HTTP responses by status class; 429s (rate limits, guess lockout) on their own too.
    private let responses: [CoreMetrics.Counter]
    let rateLimited: CoreMetrics.Counter

    init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[RealtimeMetrics.fanoutBatchLabel] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100),
        ]
        factory.durationHistogramBuckets[RealtimeMetrics.deliveryLatencyLabel] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(5),
        ]
        self.registry = registry
        connections = Meter(label: "tally_connections_open", factory: factory)
        refusedConnections = Counter(label: "tally_connections_refused_total", factory: factory)
        headerTimeouts = Counter(label: "tally_connections_header_timeouts_total", factory: factory)
        oversizedHeads = Counter(label: "tally_connections_oversized_heads_total", factory: factory)
        realtime = RealtimeMetrics(factory: factory)
        votes = Counter(label: "tally_votes_accepted_total", factory: factory)
        responses = (1...5).map { Counter(label: "tally_http_responses_total", dimensions: [("class", "\($0)xx")], factory: factory) }
        rateLimited = Counter(label: "tally_http_rate_limited_total", factory: factory)
    }

    func responded(_ status: Int) {
        if (100..<600).contains(status) { responses[status / 100 - 1].increment() }
        if status == 429 { rateLimited.increment() }
    }

    func connectionOpened() { connections.increment() }
    func connectionClosed() { connections.decrement() }

    /// Counts only, no secrets; still, a hall full of strangers need not watch the load: the
    /// operator, or anything on the appliance itself (a local scraper), may read them.
    func addRoutes(to router: Router<TallyRequestContext>, access: Access) {
        router.get("metrics") { [registry] request, context in
            // Decided by the real peer: a request relayed by a proxy on the box is not the box.
            if !context.client.isOnTheAppliance { try access.requireOperator(request) }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(8192)
            registry.emit(into: &bytes)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }
}
