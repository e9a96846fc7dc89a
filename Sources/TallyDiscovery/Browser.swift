import CAvahi
import Foundation

/// An appliance found on the network — or something claiming to be one: anyone on the Wi-Fi
/// can advertise `_tally._tcp`.
public struct DiscoveredAppliance: Sendable, Equatable, Codable {
    public var name: String
    public var host: String
    public var address: String
    public var port: Int
    public var txt: [String: String]

    public init(name: String, host: String, address: String, port: Int, txt: [String: String]) {
        self.name = name
        self.host = host
        self.address = address
        self.port = port
        self.txt = txt
    }

    /// The appliance's stable id (TXT `id`), when it advertises a well-formed one.
    public var id: String? {
        guard let id = txt["id"], ApplianceID.isWellFormed(id) else { return nil }
        return id
    }

    /// Who is advertising: one service instance on one host and port. An appliance seen on two
    /// addresses (two interfaces) is still one advertiser.
    public var origin: Origin { Origin(name: name, host: host, port: port) }

    public struct Origin: Hashable, Sendable {
        public var name: String
        public var host: String
        public var port: Int
    }

    /// Where a display should point its browser. The TXT `path` is used only when it is a plain
    /// absolute path: the advertiser chooses it, and must not be able to move the URL to another
    /// host (`path=@evil.example/`).
    public var url: String {
        // An appliance that serves TLS says so (TXT `scheme=https`); anything else is plain HTTP.
        let scheme = txt["scheme"] == "https" ? "https" : "http"
        let base = address.contains(":") ? "\(scheme)://[\(address)]:\(port)" : "\(scheme)://\(address):\(port)"
        guard let path = txt["path"], path.hasPrefix("/"), !path.hasPrefix("//"),
            path.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) && $0 != "\\" })
        else { return base + "/" }
        return base + path
    }
}

/// Appliance ids as the appliance makes them (16 lowercase letters and digits), within a
/// little latitude: 1–64 ASCII letters, digits, `-` or `_`. Anything else is not an id.
public enum ApplianceID {
    public static func isWellFormed(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }
    }
}

extension UInt8 {
    fileprivate var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}

/// Browses `_tally._tcp` through avahi-daemon and resolves what it finds (what a kiosk display
/// runs at boot: `tally discover`).
public enum ApplianceBrowser {
    /// Browses for `timeout` seconds and returns every resolved appliance (IPv4 preferred).
    public static func discover(timeout: TimeInterval, type: String = "_tally._tcp") throws -> [DiscoveredAppliance] {
        guard let poll = avahi_simple_poll_new() else { throw DiscoveryError("cannot create the avahi event loop") }
        defer { avahi_simple_poll_free(poll) }
        let box = Box()
        let opaque = Unmanaged.passUnretained(box).toOpaque()
        var error: Int32 = 0
        guard let client = avahi_client_new(avahi_simple_poll_get(poll), AvahiClientFlags(0), nil, nil, &error) else {
            throw DiscoveryError("cannot reach avahi-daemon (\(String(cString: avahi_strerror(error)))); is it running, and is D-Bus?")
        }
        defer { avahi_client_free(client) }
        guard
            let browser = avahi_service_browser_new(
                client, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), type, nil, AvahiLookupFlags(0),
                { browser, interface, proto, event, name, type, domain, _, userdata in
                    guard let userdata, event == AVAHI_BROWSER_NEW, let browser, let name, let type else { return }
                    let client = avahi_service_browser_get_client(browser)
                    // Resolve over IPv4 first: that is what a display on the venue Wi-Fi can use.
                    _ = avahi_service_resolver_new(
                        client, interface, proto, name, type, domain, AvahiProtocol(AVAHI_PROTO_INET), AvahiLookupFlags(0),
                        { resolver, _, _, event, name, _, _, host, address, port, txt, _, userdata in
                            defer { if let resolver { avahi_service_resolver_free(resolver) } }
                            guard let userdata, event == AVAHI_RESOLVER_FOUND, let name, let address else { return }
                            var text = [CChar](repeating: 0, count: Int(AVAHI_ADDRESS_STR_MAX))
                            avahi_address_snprint(&text, text.count, address)
                            // Copy the raw entries out; what they mean is TXTRecord.parse's business
                            // (a pure function, fuzzed: anyone on the Wi-Fi writes these bytes).
                            var entries: [[UInt8]] = []
                            var item = txt
                            while let entry = item {
                                let size = avahi_string_list_get_size(entry)
                                if size > 0, let start = avahi_string_list_get_text(entry) {
                                    entries.append(Array(UnsafeBufferPointer(start: start, count: size)))
                                } else {
                                    entries.append([])
                                }
                                item = avahi_string_list_get_next(entry)
                            }
                            let found = DiscoveredAppliance(
                                name: String(cString: name), host: host.map { String(cString: $0) } ?? "",
                                address: String(cString: text), port: Int(port), txt: TXTRecord.parse(entries))
                            let box = Unmanaged<Box>.fromOpaque(userdata).takeUnretainedValue()
                            if !box.found.contains(found) { box.found.append(found) }
                        }, userdata)
                }, opaque)
        else {
            throw DiscoveryError("cannot browse: \(String(cString: avahi_strerror(avahi_client_errno(client))))")
        }
        defer { avahi_service_browser_free(browser) }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if avahi_simple_poll_iterate(poll, 100) != 0 { break }
        }
        return box.found.sorted { ($0.name, $0.address) < ($1.name, $1.address) }
    }

    /// Collects results; only touched on the calling thread (simple poll, no threads).
    private final class Box {
        var found: [DiscoveredAppliance] = []
    }
}
