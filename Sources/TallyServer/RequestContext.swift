import Hummingbird
import NIOCore

/// The request context of every HTTP route.
public struct TallyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who the request is from for per-address rules (set by `ClientAddressMiddleware`; a
    /// trusted proxy may name the client). Local-only checks use its real peer.
    public var client: ClientAddress
    /// Who is calling an `/api/v1` route, and as what (set by `RequireRole` before the handler).
    var caller = Caller()
    /// The connection (an SSE stream closes it when the server ends the stream).
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.client = ClientAddress(peer: source.channel.remoteAddress)
        self.channel = source.channel
    }

    /// Every request body Tally accepts is a small JSON object.
    public var maxUploadSize: Int { 64 * 1024 }
}
