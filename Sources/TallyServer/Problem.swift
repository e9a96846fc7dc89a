import Foundation
import Hummingbird
import Logging
import TallyDomain
import TallyEventLog

/// An RFC 9457 problem: every error response is `application/problem+json` with a `detail`
/// a person can act on.
public struct Problem: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var detail: String
    public var headers: HTTPFields = [:]
    /// A URI naming the kind of problem, where a page acts on it (default `about:blank`).
    public var type: String?

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:], type: String? = nil) {
        self.status = status
        self.detail = detail
        self.headers = headers
        self.type = type
    }

    struct Body: Encodable {
        let type: String
        let title: String
        let status: Int
        let detail: String
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    func response() -> Response {
        let body = Body(type: type ?? "about:blank", title: status.reasonPhrase, status: status.code, detail: detail)
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        headers[.cacheControl] = "no-store"
        let data = (try? JSONEncoder.tally.encode(body)) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func from(_ error: DomainError) -> Problem {
        switch error {
        case .invalid(let m): Problem(.badRequest, m)
        case .notFound(let m): Problem(.notFound, m)
        case .conflict(let m), .limitReached(let m): Problem(.conflict, m)
        case .notAllowed(let m): Problem(.forbidden, m)
        case .gone(let m): Problem(.gone, m)
        }
    }

    static func from(_ failure: CommandFailure) -> Problem {
        switch failure {
        case .refused(let error): from(error)
        case .logUnavailable(EventLogError.busy):
            Problem(.serviceUnavailable, "the appliance is catching up on saving events; retry in a moment", headers: [.retryAfter: "1"])
        case .logUnavailable(let outage as StoreUnavailable):
            Problem(.serviceUnavailable, outage.description, headers: [.retryAfter: "\(StoreUnavailable.retryAfterSeconds)"])
        case .logUnavailable(EventLogError.eventTooLarge):
            Problem(.contentTooLarge, "this change is too large for the event log")
        case .logUnavailable: Problem(.serviceUnavailable, "the event log cannot accept writes; the appliance needs a restart")
        }
    }
}
