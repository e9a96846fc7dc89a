import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TallyRealtime

/// A JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONEncoder.tally.encode(value)) ?? Data("{}".utf8)
    return Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

extension JSONEncoder {
    /// The same JSON style as the event stream's (one shared encoder, not one per response).
    static var tally: JSONEncoder { WireFormat.json }
}

/// The answer to a command that only changes state: the id of its (last) event, so a client
/// can match it with what its stream delivers.
struct EventAck: Encodable { let eventId: String }
