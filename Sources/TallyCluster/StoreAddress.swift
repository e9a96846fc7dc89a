import Foundation

/// Where the cluster's PostgreSQL is: `postgresql://USER@HOST[:PORT]/DATABASE[?sslmode=…]`.
///
/// The password never comes from the URL: a command line ends up in `ps`, in shell histories
/// and in the unit's logs. It comes from a file (`store-password-file`, a systemd credential)
/// or the environment (`TALLY_STORE_PASSWORD`).
public struct StoreAddress: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable {
        /// Plain TCP (a PostgreSQL on loopback or a private network).
        case disable
        /// TLS if the server offers it.
        case prefer
        /// TLS or no connection.
        case require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var database: String
    public var tls: TLSMode
    public var password: String?

    public init(host: String, port: Int = 5432, username: String, database: String, tls: TLSMode = .prefer, password: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.database = database
        self.tls = tls
        self.password = password
    }

    /// Parses a `postgresql://` URL. Throws a message for the person who typed it.
    public init(url text: String, password: String? = nil) throws(StoreAddressError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "postgresql" || scheme == "postgres"
        else {
            throw StoreAddressError("the store must be a postgresql:// URL, like postgresql://tally@db.local:5432/tally")
        }
        if components.password != nil {
            throw StoreAddressError(
                "the store URL must not carry a password (it would show in process lists and logs): put it in store-password-file or TALLY_STORE_PASSWORD"
            )
        }
        guard let host = components.host, !host.isEmpty else { throw StoreAddressError("the store URL names no host") }
        guard let user = components.user, !user.isEmpty else {
            throw StoreAddressError("the store URL names no user, like postgresql://tally@\(host)/tally")
        }
        let database = components.path.drop(while: { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw StoreAddressError("the store URL names no database, like postgresql://\(user)@\(host)/tally")
        }
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", let value?):
                switch value {
                case "disable": tls = .disable
                case "prefer", "allow": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw StoreAddressError("sslmode must be disable, prefer or require")
                }
            default:
                throw StoreAddressError("the store URL takes only sslmode as an option, not \(item.name)")
            }
        }
        self.init(
            host: host, port: components.port ?? 5432, username: user, database: String(database), tls: tls, password: password)
    }

    /// The address without the password, for logs.
    public var description: String { "postgresql://\(username)@\(host):\(port)/\(database)" }
}

public struct StoreAddressError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
