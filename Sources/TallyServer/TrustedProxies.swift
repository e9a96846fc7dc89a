import Foundation

/// The reverse proxies allowed to say who the client is (`trusted-proxies`): CIDR blocks, IPv4
/// and IPv6. Behind a TLS-terminating proxy on the box every request comes from 127.0.0.1; only
/// a peer in this list may name the real client in `X-Forwarded-For` or `Forwarded: for=`.
/// Anyone else could write any address there, so from anyone else those headers are ignored.
///
/// Pure: no sockets, no clock. Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`), so an IPv4 block also matches a peer a dual-stack socket reports mapped.
public struct TrustedProxies: Sendable, Equatable, CustomStringConvertible {
    /// One CIDR block.
    public struct Block: Sendable, Equatable, CustomStringConvertible {
        let network: IPAddress
        /// Leading bits that must match, counted on the 128-bit form (an IPv4 /24 is 96 + 24).
        let bits: Int

        func contains(_ address: IPAddress) -> Bool {
            var left = bits
            for index in 0..<16 where left > 0 {
                let mask: UInt8 = left >= 8 ? 0xFF : ~(0xFF >> UInt8(left))
                if address.bytes[index] & mask != network.bytes[index] & mask { return false }
                left -= 8
            }
            return true
        }

        public var description: String {
            network.isIPv4 && bits >= 96 ? "\(network)/\(bits - 96)" : "\(network)/\(bits)"
        }
    }

    public let blocks: [Block]

    /// No trusted proxies: forwarded headers are never believed (the default).
    public init() { blocks = [] }

    /// Parses `127.0.0.1, 10.0.0.0/8, fd00::/8` (commas and/or spaces between blocks). A bare
    /// address is a single host. Strict: a block with host bits set (`10.0.0.1/8`), a prefix out
    /// of range, a zone (`fe80::1%eth0`) or anything that is not an address is refused, so a
    /// typo never silently trusts more, or less, than was meant.
    public init(parsing text: String) throws(ParseError) {
        var blocks: [Block] = []
        let items = text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
        for item in items {
            let parts = item.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let address = IPAddress(parts[0]) else {
                throw ParseError("\"\(item)\" is not an IPv4 or IPv6 address or CIDR block (like 10.0.0.0/8 or fd00::/8)")
            }
            // The written form decides the family: `::ffff:0:0/96` is an IPv6 block.
            let v6 = parts[0].contains(":")
            let width = v6 ? 128 : 32
            var prefix = width
            if parts.count == 2 {
                guard parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(parts[1]), (0...width).contains(n) else {
                    throw ParseError("\"\(item)\": the prefix length must be a number from 0 to \(width)")
                }
                prefix = n
            }
            let block = Block(network: address, bits: v6 ? prefix : 96 + prefix)
            let network = address.masked(to: block.bits)
            guard network == address else {
                throw ParseError(
                    "\"\(item)\" has bits set after the first \(prefix): did you mean \(Block(network: network, bits: block.bits))?")
            }
            blocks.append(block)
        }
        self.blocks = blocks
    }

    public var isEmpty: Bool { blocks.isEmpty }

    public var description: String { blocks.map(\.description).joined(separator: ", ") }

    /// Whether `address` (textual, as a socket reports it) is one of the trusted proxies.
    public func contains(_ address: String) -> Bool {
        guard !blocks.isEmpty, let ip = IPAddress(address) else { return false }
        return contains(ip)
    }

    func contains(_ ip: IPAddress) -> Bool {
        blocks.contains { $0.contains(ip) }
    }

    /// The client a request is from: the TCP `peer`, unless the peer is a trusted proxy and
    /// forwarded the request for someone. Then, walking the forwarding chain from the right
    /// (the hop the trusted peer itself saw), the first address that is not a trusted proxy —
    /// addresses further left were written by parties nobody vouches for. A malformed or
    /// obfuscated hop (`unknown`, `_hidden`) stops the walk at the last address we can vouch for.
    ///
    /// `X-Forwarded-For` is used when present (what nginx, HAProxy, Caddy and Traefik set);
    /// otherwise `Forwarded: for=` (RFC 7239). Both arrive as their header lines in order.
    /// The result is canonical text, so one address is one rate-limit key however it was written.
    public func client(peer: String, forwardedFor: [String], forwarded: [String]) -> String {
        guard let peerIP = IPAddress(peer), contains(peerIP) else { return peer }
        let hops: [String]
        if !forwardedFor.isEmpty {
            hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        } else {
            hops = forwarded.flatMap(Self.forElements)
        }
        var vouched = peerIP
        for hop in hops.reversed() {
            guard let ip = IPAddress(node: hop) else { break }
            vouched = ip
            if !contains(ip) { break }
        }
        return vouched.description
    }

    /// The `for=` values of a `Forwarded` header line, in order (elements are comma-separated,
    /// pairs within one semicolon-separated; a quoted value may hold `:` and `[]`).
    static func forElements(_ line: String) -> [String] {
        var result: [String] = []
        for element in splitOutsideQuotes(line, on: ",") {
            var found: String?
            for pair in splitOutsideQuotes(element, on: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2, kv[0].lowercased() == "for" else { continue }
                var value = kv[1]
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
                found = value
            }
            // An element without `for=` is a hop that did not say whom it forwarded for.
            result.append(found ?? "unknown")
        }
        return result
    }

    private static func splitOutsideQuotes(_ text: String, on separator: Character) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            if character == "\"" { quoted.toggle() }
            if character == separator, !quoted {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Why a `trusted-proxies` value was refused.
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}

/// An IPv4 or IPv6 address as 16 bytes (IPv4 mapped into IPv6).
struct IPAddress: Sendable, Equatable, CustomStringConvertible {
    let bytes: [UInt8]

    private static let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]

    /// Strict textual forms only: dotted-quad IPv4 (no leading zeros, no shorthand) or IPv6
    /// (no zone).
    init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 45, !text.contains("%") else { return nil }
        if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        } else {
            let octets = text.split(separator: ".", omittingEmptySubsequences: false)
            guard octets.count == 4 else { return nil }
            var parsed: [UInt8] = []
            for octet in octets {
                guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy({ $0.isASCII && $0.isNumber }),
                    octet == "0" || octet.first != "0", let value = UInt8(octet)
                else { return nil }
                parsed.append(value)
            }
            bytes = Self.mappedPrefix + parsed
        }
    }

    /// A forwarding hop as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
    /// `[2001:db8::1]` or `[2001:db8::1]:5678`.
    init?(node text: String) {
        var host = Substring(text)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            host = host[host.index(after: host.startIndex)..<close]
        } else if host.filter({ $0 == ":" }).count == 1 {
            let parts = host.split(separator: ":", omittingEmptySubsequences: false)
            guard parts[1].allSatisfy(\.isNumber) else { return nil }
            host = parts[0]
        }
        self.init(String(host))
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    var isIPv4: Bool { bytes.starts(with: Self.mappedPrefix) }

    func masked(to bits: Int) -> IPAddress {
        var out = bytes
        for index in 0..<16 {
            let keep = max(0, min(8, bits - index * 8))
            out[index] &= keep == 8 ? 0xFF : ~(0xFF >> UInt8(keep))
        }
        return IPAddress(bytes: out)
    }

    var description: String {
        if isIPv4 { return bytes[12...].map(String.init).joined(separator: ".") }
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &raw, &text, socklen_t(INET6_ADDRSTRLEN)) != nil else { return "?" }
        return String(cString: text)
    }
}
