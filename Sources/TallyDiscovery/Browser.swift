import CAvahi
import Foundation

/// An appliance found on the network.
public struct DiscoveredAppliance: Sendable, Equatable, Codable {
    public var name: String
    public var host: String
    public var address: String
    public var port: Int
    public var txt: [String: String]
    /// Where a display should point its browser.
    public var url: String {
        let base = address.contains(":") ? "http://[\(address)]:\(port)" : "http://\(address):\(port)"
        return base + (txt["path"] ?? "/")
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
                            var records: [String: String] = [:]
                            var item = txt
                            while let entry = item {
                                let bytes = UnsafeBufferPointer(start: avahi_string_list_get_text(entry), count: avahi_string_list_get_size(entry))
                                let pair = String(decoding: bytes, as: UTF8.self)
                                let parts = pair.split(separator: "=", maxSplits: 1)
                                records[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
                                item = avahi_string_list_get_next(entry)
                            }
                            let found = DiscoveredAppliance(
                                name: String(cString: name), host: host.map { String(cString: $0) } ?? "",
                                address: String(cString: text), port: Int(port), txt: records)
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
