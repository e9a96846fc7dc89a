import Foundation
import Logging
import TallyDomain
import TallyEventLog

/// Everything `tally serve` can be told. Defaults make a bare `tally serve` work.
public struct TallyConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    /// Where the database and the appliance secret live.
    public var dataDirectory = "./.tally-data"
    /// When set, the operator password (otherwise the stored one, or first-run set-up).
    public var operatorPassword: String?
    /// Cluster mode: the PostgreSQL several instances share (`postgresql://user@host/db`, the
    /// password apart). Nil: the embedded appliance (ring file and SQLite in `dataDirectory`).
    public var store: String?
    /// The PostgreSQL password (from `store-password-file` or `TALLY_STORE_PASSWORD`).
    public var storePassword: String?
    /// The address participants use to reach the box (for join URLs and QR codes), e.g.
    /// `http://tally.local`. Default: the address the request came to, or the LAN address.
    public var publicURL: String?
    /// Advertise over mDNS (avahi-daemon).
    public var mdns = true
    /// mDNS instance name; default "Tally on <hostname>".
    public var name: String?
    public var durability: Durability = .fsync
    /// Capacity of the event ring file (replay buffer and write-ahead log).
    public var ringSize = 1 << 30
    /// How long events are served for replay (capacity permitting).
    public var retention: TimeInterval = 24 * 3600
    public var limits = SessionLimits()
    public var maxSessions = 10_000
    /// Minimum time between two `poll.results` of one poll.
    public var resultsInterval: Duration = .milliseconds(50)
    /// SSE keep-alive comment interval (WebSocket uses protocol pings every `pingInterval`).
    public var sseHeartbeat: Duration = .seconds(15)
    public var pingInterval: Duration = .seconds(30)
    /// Events a stream may have queued before it is disconnected as a slow consumer.
    public var streamQueueLimit = 4096
    /// Longest a graceful shutdown may take before open work is cancelled.
    public var shutdownGrace: Duration = .seconds(4)

    /// Connection caps and the slow-client deadlines (see `ConnectionLimits`).
    public var connections = ConnectionLimits()

    /// Per-participant and per-IP rate limits on votes and joins (see `Limits`).
    public var rateLimits = true

    /// How phones reach the box: many behind one NAT (`shared`) or one address each (`flat`).
    public var network: NetworkMode = .shared
    /// In `flat` mode: new participants one address may create per minute.
    public var flatJoinsPerMinute = 3
    /// Host names the box also answers to (besides its addresses, host name, public-url host
    /// and localhost), e.g. a DNS name the venue gave it.
    public var allowedHosts: [String] = []
    /// The Wi-Fi network the room joins, shown as a QR code on the display's idle screen.
    public var wifi: VenueWiFi?

    /// TLS for venues that have a certificate: the certificate (PEM, leaf first, then any
    /// intermediates) and its unencrypted private key (PEM). Both or neither; with them `port`
    /// speaks only HTTPS (and WebSocket over TLS).
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// With TLS: a plain-HTTP port that answers everything with a 308 to the same path over https.
    public var httpRedirectPort: Int?
    /// Reverse proxies that may name the client in X-Forwarded-For / Forwarded (none by default).
    public var trustedProxies = TrustedProxies()

    public var usesTLS: Bool { tlsCertificate != nil && tlsKey != nil }

    /// For tests of the watchdog: while this file exists the appliance reports itself unhealthy.
    public var healthFile: String?

    public init() {}

    /// The software version, shown in mDNS TXT records and `tally --version`.
    public static let version = "0.1.0"
}
