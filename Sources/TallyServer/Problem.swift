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

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.headers = headers
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
        let body = Body(type: "about:blank", title: status.reasonPhrase, status: status.code, detail: detail)
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
        case .logUnavailable(EventLogError.eventTooLarge):
            Problem(.contentTooLarge, "this change is too large for the event log")
        case .logUnavailable: Problem(.serviceUnavailable, "the event log cannot accept writes; the appliance needs a restart")
        }
    }
}

/// Turns every error into a problem response, so a client never sees an empty 500, and logs
/// the ones that are the server's fault.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Paths phones and laptops fetch to detect a captive portal.
    static var captiveProbes: Set<String> {
        ["/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html", "/connecttest.txt",
         "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt"]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return problem.response()
        } catch let failure as CommandFailure {
            return Problem.from(failure).response()
        } catch let error as HTTPError {
            // A phone checking for internet (a captive-portal probe) or anyone typing a wrong
            // address into a browser lands on the join page instead of an error.
            if error.status == .notFound, request.method == .get, !request.uri.path.hasPrefix("/api/"),
                request.uri.path != "/events", request.headers[.accept]?.contains("text/html") == true
                    || Self.captiveProbes.contains(request.uri.path)
            {
                return Response(status: .found, headers: [.location: "/", .cacheControl: "no-store"])
            }
            let detail: String
            switch error.status {
            case .notFound: detail = "no such route: \(request.method) \(request.uri.path)"
            case .contentTooLarge: detail = "request body is too large"
            default: detail = error.body ?? error.status.reasonPhrase
            }
            return Problem(error.status, detail, headers: error.headers).response()
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            return Problem(error.status, error.status.reasonPhrase).response()
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            return Problem(.internalServerError, "internal error").response()
        }
    }
}

/// One log line per request, without the query string (it may carry a token) or any header.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        metrics.responded(response.status.code)
        let elapsed = start.duration(to: .now)
        let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        context.logger.info(
            "request",
            metadata: [
                "method": "\(request.method)", "path": "\(request.uri.path)",
                "status": "\(response.status.code)", "ms": "\(String(format: "%.1f", ms))",
            ])
        return response
    }
}
