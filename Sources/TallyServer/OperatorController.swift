import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /api/v1/operator/status`: the operator's console, as one JSON snapshot or — when the
/// client asks for `text/event-stream`, as EventSource does — as a stream of them.
struct OperatorController: Sendable {
    let console: OperatorConsole
    let access: Access

    func addRoutes(to api: APIRoutes) {
        api.role(.operator, requirement: "the console is for the operator: sign in on /presenter").get("operator/status", use: status)
    }

    /// The SSE event every snapshot travels as.
    static let eventType = "operator.status"

    func status(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let streaming = request.headers[values: .accept].contains { $0.lowercased().contains("text/event-stream") }
        guard streaming else { return json(console.snapshot(for: request)) }
        let headers: HTTPFields = [
            .contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        // HEAD (derived from this GET) checks access and starts no stream.
        if request.method == .head { return Response(status: .ok, headers: headers) }
        let console = self.console
        let access = self.access
        let channel = context.channel
        let body = ResponseBody { writer in
            // One snapshot at once, then one per sampler tick (every 2 s: also the heartbeat).
            // The stream ends when the sign-in that opened it ends (checked each tick, as other
            // operator streams are revoked) and at shutdown (the console closes), so the server
            // can drain.
            var first = true
            var revoked = false
            while true {
                if !first, !(await console.nextTick()) { break }
                first = false
                guard access.grants(of: request).contains(.operator) else {
                    revoked = true
                    break
                }
                let data = try JSONEncoder.tally.encode(console.tickSnapshot(for: request))
                var buffer = ByteBuffer(string: "event: \(Self.eventType)\ndata: ")
                buffer.writeBytes(data)
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
            // As a revoked `/events` stream: the connection closes too, not only the body.
            if revoked { channel.close(promise: nil) }
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
