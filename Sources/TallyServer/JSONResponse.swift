import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONEncoder.tally.encode(value)) ?? Data("{}".utf8)
    return Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

extension JSONEncoder {
    /// Sorted keys: stable, diffable output in logs, tests and browser tools.
    static var tally: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

/// The answer to a command that only changes state: the id of its (last) event, so a client
/// can match it with what its stream delivers.
struct EventAck: Encodable { let eventId: String }
