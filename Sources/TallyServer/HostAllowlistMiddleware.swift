import HTTPTypes
import Hummingbird

/// Refuses requests whose `Host` does not name this box (see `HostAllowlist`). A request
/// without `Host` (HTTP/1.0 tools) is let through: a browser always sends one.
struct HostAllowlistMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowlist: HostAllowlist

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let authority = request.head.authority, !allowlist.allows(authority) {
            throw Problem(
                .misdirectedRequest,
                "this appliance does not answer to \"\(HostAllowlist.hostPart(authority))\"; use its address, its .local name or public-url (or add the name to allowed-hosts)")
        }
        return try await next(request, context)
    }
}
