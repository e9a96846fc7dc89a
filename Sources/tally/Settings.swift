import Foundation
import TallyCluster
import TallyDomain
import TallyEventLog
import TallyServer

/// Where a setting came from, for error messages that name it.
struct SettingSource: CustomStringConvertible {
    let description: String
}

/// Settings layered as the appliance expects: defaults < /etc/tally/tally.conf < TALLY_*
/// environment < command line. Every key is known; an unknown key or a bad value refuses to
/// start with a message naming the key and where it came from.
struct Settings {
    static let keys: [String: String] = [
        "host": "address to listen on",
        "port": "TCP port",
        "data-dir": "directory for the database and the event ring",
        "operator-password": "operator password",
        "public-url": "URL participants use to reach the box",
        "name": "mDNS instance name",
        "mdns": "advertise over mDNS (yes/no)",
        "durability": "fsync or os",
        "ring-size": "size of the event ring",
        "retention-hours": "hours events stay replayable",
        "log-level": "trace … critical",
        "rate-limits": "per-participant and per-IP limits on votes and joins (yes/no)",
        "max-connections": "open connections in all",
        "max-connections-per-ip": "open connections from one address",
        "header-timeout": "seconds a new connection has to send its request head",
        "idle-timeout": "seconds a keep-alive connection may sit idle between requests",
        "stream-queue-limit": "events a stream may fall behind before it is closed as a slow consumer",
        "ping-interval": "seconds between WebSocket pings (each connection's first at a random point)",
        "network": "shared (many phones behind one NAT) or flat (one address per phone)",
        "joins-per-minute": "in flat mode, new participants one address may create per minute",
        "allowed-hosts": "extra host names the box answers to, comma-separated",
        "wifi-ssid": "Wi-Fi network the room joins, shown as a QR code on the display",
        "wifi-passphrase": "that network's WPA2 passphrase (none: an open network)",
        "tls-cert": "TLS certificate, PEM (with tls-key: serve HTTPS)",
        "tls-key": "TLS private key, PEM",
        "http-redirect-port": "with TLS: a plain-HTTP port that redirects to https",
        "trusted-proxies": "CIDRs of reverse proxies that may name the client (X-Forwarded-For, Forwarded)",
        "blocklist": "file of words never shown on screens, one per line (written answers that match are hidden)",
        "store": "cluster mode: the PostgreSQL several instances share, postgresql://user@host:port/database (no password)",
        "store-password-file": "file holding the PostgreSQL password (or set TALLY_STORE_PASSWORD)",
    ]

    private(set) var values: [String: (String, SettingSource)] = [:]

    mutating func set(_ key: String, _ value: String, from source: SettingSource) {
        values[key] = (value, source)
    }

    /// `key = value` lines; `#` starts a comment; blank lines are ignored.
    mutating func load(file path: String) throws {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SettingsError("cannot read the configuration file \(path): \(error.localizedDescription)")
        }
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let where_ = SettingSource(description: "\(path):\(index + 1)")
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty else {
                throw SettingsError("\(where_): expected `key = value`, got \"\(trimmed)\"")
            }
            guard Self.keys[parts[0]] != nil else {
                throw SettingsError("\(where_): unknown key \"\(parts[0])\" (known: \(Self.keys.keys.sorted().joined(separator: ", ")))")
            }
            var value = parts[1]
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            set(parts[0], value, from: where_)
        }
    }

    /// The configuration file (`--config`, else TALLY_CONFIG, else the default when it exists),
    /// then the TALLY_* environment: what every command starts from.
    static func layered(config: String?, environment: [String: String], defaultFile: String) throws -> Settings {
        var settings = Settings()
        if let file = config ?? environment["TALLY_CONFIG"] {
            try settings.load(file: file)
        } else if FileManager.default.fileExists(atPath: defaultFile) {
            try settings.load(file: defaultFile)
        }
        try settings.load(environment: environment)
        return settings
    }

    mutating func load(environment: [String: String]) throws {
        for (name, value) in environment where name.hasPrefix("TALLY_") {
            let key = name.dropFirst(6).lowercased().replacingOccurrences(of: "_", with: "-")
            // Read directly by the commands that use them (a password is not a setting to echo).
            if ["config", "health-file", "store-password"].contains(key) { continue }
            guard Self.keys[key] != nil else {
                throw SettingsError(
                    "environment variable \(name): unknown setting (known: \(Self.keys.keys.sorted().map { "TALLY_" + $0.uppercased().replacingOccurrences(of: "-", with: "_") }.joined(separator: ", ")))"
                )
            }
            set(key, value, from: SettingSource(description: "environment variable \(name)"))
        }
    }

    func configuration() throws -> (TallyConfiguration, logLevel: String) {
        var config = TallyConfiguration()
        func value(_ key: String) -> (String, SettingSource)? { values[key] }
        func fail(_ key: String, _ why: String) -> SettingsError {
            let (v, source) = values[key]!
            return SettingsError("\(key) = \"\(v)\" (from \(source)): \(why)")
        }
        if let (v, _) = value("host") { config.host = v }
        if let (v, _) = value("port") {
            guard let port = Int(v), (0...65535).contains(port) else { throw fail("port", "must be a number from 0 to 65535") }
            config.port = port
        }
        if let (v, _) = value("data-dir") { config.dataDirectory = v }
        if let (v, _) = value("store"), !v.isEmpty {
            do {
                _ = try StoreAddress(url: v)
            } catch {
                throw fail("store", error.description)
            }
            config.store = v
        }
        if let (v, _) = value("store-password-file"), !v.isEmpty {
            do {
                let text = try String(contentsOfFile: v, encoding: .utf8)
                config.storePassword = text.trimmingCharacters(in: .newlines)
            } catch {
                throw fail("store-password-file", "cannot be read: \(error.localizedDescription)")
            }
        }
        if let (v, _) = value("operator-password"), !v.isEmpty {
            if let problem = OperatorPassword.problem(with: v) { throw fail("operator-password", problem) }
            config.operatorPassword = v
        }
        if let (v, _) = value("public-url") {
            guard let url = URL(string: v), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw fail("public-url", "must look like http://tally.local or http://192.168.4.1:8080")
            }
            config.publicURL = v
        }
        if let (v, _) = value("name"), !v.isEmpty {
            guard v.utf8.count <= 63 else { throw fail("name", "must be at most 63 bytes (an mDNS label)") }
            config.name = v
        }
        func flag(_ key: String) throws -> Bool? {
            guard let (v, _) = value(key) else { return nil }
            switch v.lowercased() {
            case "yes", "true", "1", "on": return true
            case "no", "false", "0", "off": return false
            default: throw fail(key, "must be yes or no")
            }
        }
        if let on = try flag("mdns") { config.mdns = on }
        if let on = try flag("rate-limits") { config.rateLimits = on }
        if let (v, _) = value("durability") {
            guard let d = Durability(rawValue: v) else { throw fail("durability", "must be fsync or os") }
            config.durability = d
        }
        if let (v, _) = value("ring-size") {
            guard let bytes = parseSize(v) else { throw fail("ring-size", "must look like 1GiB, 256MiB or a number of bytes") }
            if let problem = RingEventLog.Options.capacityProblem(bytes) { throw fail("ring-size", problem) }
            config.ringSize = bytes
        }
        if let (v, _) = value("retention-hours") {
            guard let hours = Double(v), hours > 0, hours <= 24 * 365 else {
                throw fail("retention-hours", "must be a number of hours above 0")
            }
            config.retention = hours * 3600
        }
        func count(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let (v, _) = value(key) else { return nil }
            guard let n = Int(v), range.contains(n) else {
                throw fail(key, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        func seconds(_ key: String, _ range: ClosedRange<Double>) throws -> Duration? {
            guard let (v, _) = value(key) else { return nil }
            guard let n = Double(v), range.contains(n) else {
                throw fail(key, "must be a number of seconds from \(range.lowerBound) to \(range.upperBound)")
            }
            return .milliseconds(Int64(n * 1000))
        }
        if let n = try count("max-connections", 1...1_000_000) { config.connections.maxConnections = n }
        if let n = try count("max-connections-per-ip", 1...1_000_000) { config.connections.maxConnectionsPerAddress = n }
        if let d = try seconds("header-timeout", 0.1...300) { config.connections.headerTimeout = d }
        if let d = try seconds("idle-timeout", 1...3600) { config.connections.idleTimeout = d }
        if let n = try count("stream-queue-limit", 8...1_000_000) { config.streamQueueLimit = n }
        if let d = try seconds("ping-interval", 1...300) { config.pingInterval = d }
        if let (v, _) = value("network") {
            guard let mode = NetworkMode(rawValue: v.lowercased()) else { throw fail("network", "must be shared or flat") }
            config.network = mode
            // One address is one phone: a few connections each (tabs, a reconnect in flight).
            if mode == .flat, value("max-connections-per-ip") == nil { config.connections.maxConnectionsPerAddress = 32 }
        }
        if let n = try count("joins-per-minute", 1...600) { config.flatJoinsPerMinute = n }
        if let (v, _) = value("allowed-hosts") {
            let names = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            if let bad = names.first(where: { name in !name.allSatisfy { $0.isLetter || $0.isNumber || "-.:[]".contains($0) } }) {
                throw fail("allowed-hosts", "\"\(bad)\" is not a host name")
            }
            config.allowedHosts = names
        }
        if let (ssid, _) = value("wifi-ssid"), !ssid.isEmpty {
            do throws(VenueWiFi.Invalid) {
                config.wifi = try VenueWiFi(ssid: ssid, passphrase: value("wifi-passphrase").map(\.0).flatMap { $0.isEmpty ? nil : $0 })
            } catch {
                throw fail(error.setting, error.reason)
            }
        } else if let (v, _) = value("wifi-passphrase"), !v.isEmpty {
            throw fail("wifi-passphrase", "needs wifi-ssid (the network's name) too")
        }
        if let (v, _) = value("tls-cert"), !v.isEmpty { config.tlsCertificate = v }
        if let (v, _) = value("tls-key"), !v.isEmpty { config.tlsKey = v }
        if (config.tlsCertificate == nil) != (config.tlsKey == nil) {
            throw fail(
                config.tlsCertificate == nil ? "tls-key" : "tls-cert", "tls-cert and tls-key go together: give both PEM files, or neither")
        }
        if let n = try count("http-redirect-port", 0...65535) {
            guard config.usesTLS else { throw fail("http-redirect-port", "redirects to https, so it needs tls-cert and tls-key") }
            guard n != config.port || n == 0 else {
                throw fail("http-redirect-port", "must differ from port (\(config.port)), which serves https")
            }
            config.httpRedirectPort = n
        }
        if let (v, _) = value("trusted-proxies") {
            do {
                config.trustedProxies = try TrustedProxies(parsing: v)
            } catch {
                throw fail("trusted-proxies", "\(error)")
            }
        }
        if let (path, _) = value("blocklist"), !path.isEmpty {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw fail("blocklist", "cannot read \(path): \(error.localizedDescription)")
            }
            config.limits.blocklist = Blocklist(lines: text.split(whereSeparator: \.isNewline))
        }
        let level = value("log-level")?.0 ?? "info"
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level) else {
            throw fail("log-level", "must be one of trace, debug, info, notice, warning, error, critical")
        }
        return (config, level)
    }
}

struct SettingsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// "1GiB", "256MiB", "64KiB", "1G", "4096" → bytes.
func parseSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [
        ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1),
    ]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        guard let n = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
    return Int(trimmed)
}
