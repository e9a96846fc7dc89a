import Foundation
import HTTPTypes
import Hummingbird

/// CSRF: a browser's state-changing request must come from a page of this box. Browsers send
/// `Origin` on such requests; a mismatch (or `null`) is refused. Clients that authenticate with
/// `Authorization: Bearer` are not browsers riding on cookies and are not checked.
struct SameOriginMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method != .get, request.method != .head, request.headers[.authorization] == nil,
            let origin = request.headers[.origin], !SameOrigin.matches(origin: origin, request: request)
        {
            throw Problem(.forbidden, "cross-site request refused: \(origin) is not this appliance")
        }
        return try await next(request, context)
    }
}

enum SameOrigin {
    /// Whether `origin` (scheme://host[:port]) names the host this request was sent to.
    static func matches(origin: String, request: Request) -> Bool {
        guard origin != "null", let url = URL(string: origin), let host = url.host?.lowercased(),
            let authority = request.head.authority?.lowercased()
        else { return false }
        let defaultPort = url.scheme == "https" ? 443 : 80
        let originHostPort = "\(host):\(url.port ?? defaultPort)"
        let parts = authority.split(separator: ":")
        let requestHostPort = parts.count == 2 ? authority : "\(authority):\(defaultPort)"
        return originHostPort == requestHostPort || "[\(host)]:\(url.port ?? defaultPort)" == requestHostPort
    }
}
