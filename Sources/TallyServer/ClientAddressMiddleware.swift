import Hummingbird

/// Resolves `context.client` once per request, before anything reads it.
struct ClientAddressMiddleware: RouterMiddleware {
    let trustedProxies: TrustedProxies

    func handle(
        _ request: Request, context: TallyRequestContext, next: (Request, TallyRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.client = ClientAddress(peer: context.remoteAddress, headers: request.headers, trustedProxies: trustedProxies)
        return try await next(request, context)
    }
}
