import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context for both the HTTP and the WebSocket router.
public struct TallyRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Every request body Tally accepts is a small JSON object.
    public var maxUploadSize: Int { 64 * 1024 }
}
