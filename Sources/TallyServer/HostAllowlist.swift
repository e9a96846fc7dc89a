import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// DNS rebinding: a web page a visitor opens elsewhere can point its own host name at the
/// box's address and then talk to the box from the visitor's browser as "same origin". The
/// browser still sends that foreign name in `Host`, so every request must name the box: one of
/// its own addresses, its host name (also as `.local`), `localhost`, the host of `public-url`,
/// or a name listed in `allowed-hosts`. Anything else gets 421 Misdirected Request.
final class HostAllowlist: Sendable {
    private let names: Set<String>
    private let addresses = Mutex<(known: Set<String>, readAt: ContinuousClock.Instant?)>(([], nil))

    init(publicURL: String?, extra: [String], hostName: String = ProcessInfo.processInfo.hostName) {
        var names: Set<String> = ["localhost", "localhost.localdomain"]
        let short = hostName.lowercased().split(separator: ".").first.map(String.init) ?? ""
        if !short.isEmpty { names.formUnion([short, short + ".local"]) }
        names.insert(hostName.lowercased())
        if let publicURL, let host = URL(string: publicURL)?.host?.lowercased() { names.insert(Self.bare(host)) }
        for name in extra { names.insert(Self.bare(name.lowercased())) }
        self.names = names
    }

    /// The host part of a `Host` header value, lowercased, without port or IPv6 brackets.
    static func hostPart(_ authority: String) -> String {
        let lower = authority.lowercased()
        if lower.hasPrefix("[") {
            return String(lower.dropFirst().prefix { $0 != "]" })
        }
        let parts = lower.split(separator: ":", omittingEmptySubsequences: false)
        // More than one colon without brackets: a bare IPv6 address.
        return parts.count > 2 ? lower : String(parts.first ?? "")
    }

    private static func bare(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    func allows(_ authority: String) -> Bool {
        var host = Self.hostPart(authority)
        if host.hasSuffix(".") { host.removeLast() }  // "tally.local." is the same name
        if names.contains(host) { return true }
        if host.hasPrefix("127.") || host == "::1" { return host.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } }
        return isOwnAddress(host)
    }

    /// The box's interface addresses, re-read when an unknown one is asked for (DHCP may give
    /// the box a new address while it runs), at most once every 5 seconds.
    private func isOwnAddress(_ host: String) -> Bool {
        guard host.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" || $0 == "%" }) else { return false }
        let now = ContinuousClock.now
        return addresses.withLock { cache in
            if cache.known.contains(host) { return true }
            if let at = cache.readAt, at.duration(to: now) < .seconds(5) { return false }
            cache.known = Self.interfaceAddresses()
            cache.readAt = now
            return cache.known.contains(host)
        }
    }

    static func interfaceAddresses() -> Set<String> {
        Set(NetworkInterface.all().map(\.address))
    }
}

/// One address of one of the box's network interfaces, in the kernel's order.
struct NetworkInterface {
    let address: String
    let isIPv4: Bool
    let isLoopback: Bool
    let isUp: Bool

    static func all() -> [NetworkInterface] {
        var result: [NetworkInterface] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return result }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let addr = entry.pointee.ifa_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            let family = Int32(addr.pointee.sa_family)
            switch family {
            case AF_INET:
                var sin = addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                inet_ntop(AF_INET, &sin.sin_addr, &text, socklen_t(text.count))
            case AF_INET6:
                var sin6 = addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                inet_ntop(AF_INET6, &sin6.sin6_addr, &text, socklen_t(text.count))
            default: continue
            }
            let flags = entry.pointee.ifa_flags
            result.append(
                NetworkInterface(
                    address: String(cString: text).lowercased(), isIPv4: family == AF_INET,
                    isLoopback: flags & UInt32(IFF_LOOPBACK) != 0, isUp: flags & UInt32(IFF_UP) != 0))
        }
        return result
    }
}

extension HostAllowlist {
    /// The answer to a request naming another host (the HTTP routes and the WebSocket upgrade alike).
    static func refusal(_ authority: String) -> Problem {
        Problem(
            .misdirectedRequest,
            "this appliance does not answer to \"\(hostPart(authority))\"; use its address, its .local name or public-url (or add the name to allowed-hosts)"
        )
    }
}
