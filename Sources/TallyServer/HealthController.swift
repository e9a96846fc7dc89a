import Foundation
import Hummingbird
import TallyCluster
import TallyEventLog
import TallyRealtime

/// `/healthz` (the process answers) and `/readyz` (the log is writable; accepting commands),
/// and the API contract at `/api/v1/openapi.yaml`.
struct HealthController: Sendable {
    let venue: Venue
    let hub: EventHub
    let log: any EventLog
    let projection: SQLiteProjection?
    let retention: TimeInterval

    func addRoutes(to router: Router<TallyRequestContext>, api: APIRoutes) {
        router.get("healthz") { _, _ in json(["status": "ok"]) }
        router.get("readyz", use: ready)
        api.role(.anyone).get("openapi.yaml") { _, _ in
            guard let document = OpenAPIDocument.text else {
                throw Problem(.notFound, "the API document is not installed next to the binary")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: document)))
        }
    }

    struct Readiness: Encodable {
        let status: String
        let detail: String?
        let epoch: String
        let lastEventId: String
        let sessions: Int
        let streams: Int
        let ring: Ring
    }

    /// How far back replay reaches.
    struct Ring: Encodable {
        let sizeBytes: Int
        let retainedEvents: Int
        let oldestEventId: String?
        let oldestEventAgeSeconds: Int?
        let retentionSeconds: Int
        /// True when capacity, not age, decides how far back replay reaches.
        let limitedByCapacity: Bool
    }

    func ready(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let failure = log.failure
        let readable = projection?.isReadable() ?? true
        // A cluster instance is ready while PostgreSQL answers and it hears the others.
        let outage = (log as? ClusterLog)?.outage
        let reach = log.reach()
        let ok = failure == nil && readable && outage == nil
        return json(
            Readiness(
                status: ok ? "ready" : "unavailable",
                detail: failure.map { "\($0)" }
                    ?? (readable ? outage.map { "the cluster's database: \($0)" } : "the database does not answer"),
                epoch: log.epoch, lastEventId: hub.eventId(log.durableSequence),
                sessions: venue.sessionCount, streams: hub.connectionCount,
                ring: Ring(
                    sizeBytes: reach.capacityBytes ?? 0, retainedEvents: reach.retainedEvents,
                    oldestEventId: reach.oldestSequence.map(hub.eventId),
                    oldestEventAgeSeconds: reach.oldestTimestamp.map { max(0, Int(Date().timeIntervalSince($0))) },
                    retentionSeconds: Int(retention), limitedByCapacity: reach.limitedByCapacity)),
            status: ok ? .ok : .serviceUnavailable)
    }
}

/// The OpenAPI document, embedded in the binary from Resources/openapi.yaml.
enum OpenAPIDocument {
    static let text: String? = EmbeddedResources.files["openapi.yaml"]
}
