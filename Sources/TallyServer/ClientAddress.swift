import HTTPTypes
import Hummingbird
import NIOCore

/// Who a request is from, for the rules that depend on it.
///
/// Two questions, answered from different facts on purpose:
/// - *Whose budget?* (per-address rate limits, the wrong-join-code lockout): `address`, which
///   through a trusted proxy is the client it forwarded for.
/// - *Is this the box itself, or the venue's own network?* (`/metrics`, first-run set-up): only
///   the real TCP peer, and never for a relayed request. A proxy on the box is 127.0.0.1 for
///   every phone in the hall; what it forwards is not local, whoever it came from.
public struct ClientAddress: Sendable {
    /// The TCP peer: the proxy, when there is one.
    public let peer: SocketAddress?
    /// The address per-address budgets count against.
    public let address: String
    /// The request carried `X-Forwarded-For` or `Forwarded`, trusted or not. A client can only
    /// make itself *less* privileged by sending them, so they are honoured for this even from
    /// an untrusted peer.
    public let forwarded: Bool

    /// A direct connection, before any header is read.
    init(peer: SocketAddress?) {
        self.peer = peer
        self.address = peer?.ipAddress ?? "unknown"
        self.forwarded = false
    }

    init(peer: SocketAddress?, headers: HTTPFields, trustedProxies: TrustedProxies) {
        let forwardedFor = headers[values: .xForwardedFor]
        let forwarded = headers[values: .forwarded]
        self.peer = peer
        self.forwarded = !forwardedFor.isEmpty || !forwarded.isEmpty
        let direct = peer?.ipAddress ?? "unknown"
        self.address =
            self.forwarded && !trustedProxies.isEmpty
            ? trustedProxies.client(peer: direct, forwardedFor: forwardedFor, forwarded: forwarded) : direct
    }

    /// The appliance itself (a local scraper, the kiosk's own browser), connected directly.
    var isOnTheAppliance: Bool { !forwarded && (peer.map(LocalNetwork.isLoopback) ?? false) }

    /// The venue's own network (private, link-local, loopback), connected directly.
    var isOnTheLocalNetwork: Bool { !forwarded && (peer.map(LocalNetwork.contains) ?? false) }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let forwarded = Self("Forwarded")!
}
