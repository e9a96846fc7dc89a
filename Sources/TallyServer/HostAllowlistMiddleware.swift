import HTTPTypes
import Hummingbird

/// Refuses requests whose `Host` does not name this box (see `HostAllowlist`). A request
/// without `Host` (HTTP/1.0 tools) is let through: a browser always sends one.
struct HostAllowlistMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowlist: HostAllowlist

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let authority = request.head.authority, !allowlist.allows(authority) {
            throw HostAllowlist.refusal(authority)
        }
        return try await next(request, context)
    }
}
