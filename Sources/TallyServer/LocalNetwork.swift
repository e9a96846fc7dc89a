import NIOCore

/// Loopback, private (RFC 1918), link-local and unique-local addresses: the venue's own network.
enum LocalNetwork {
    static func contains(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return address.protocol == .unix }
        if ip.contains(".") {
            let o = ip.split(separator: ".").compactMap { Int($0) }
            guard o.count == 4 else { return false }
            return o[0] == 127 || o[0] == 10 || (o[0] == 172 && (16...31).contains(o[1])) || (o[0] == 192 && o[1] == 168)
                || (o[0] == 169 && o[1] == 254) || (o[0] == 100 && (64...127).contains(o[1]))
        }
        let lower = ip.lowercased()
        if lower.hasPrefix("::ffff:") { return (try? SocketAddress(ipAddress: String(lower.dropFirst(7)), port: 0)).map(contains) ?? false }
        return lower == "::1" || lower.hasPrefix("fe80:") || lower.hasPrefix("fc") || lower.hasPrefix("fd")
    }

    /// The appliance itself (127.0.0.0/8, ::1, or a Unix socket).
    static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress?.lowercased() else { return address.protocol == .unix }
        let v4 = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
        return v4.hasPrefix("127.") || ip == "::1"
    }
}
