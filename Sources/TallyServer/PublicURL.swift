import Foundation
import Hummingbird

/// The address participants use to reach the box, for join URLs and QR codes: `--public-url`
/// if set; otherwise the host the request came to, unless that is loopback (a display on the
/// box itself), in which case the box's first LAN IPv4 address.
struct PublicURL: Sendable {
    let configured: String?
    let port: Int
    /// "https" when the box serves TLS itself.
    var scheme = "http"

    func base(for request: Request) -> String {
        if let configured { return configured.hasSuffix("/") ? String(configured.dropLast()) : configured }
        let host = request.head.authority ?? ""
        let name = host.split(separator: ":").first.map(String.init) ?? ""
        if !name.isEmpty, name != "localhost", !name.hasPrefix("127."), name != "[::1]" {
            return "\(scheme)://\(host)"
        }
        if let lan = Self.lanAddress() {
            return port == (scheme == "https" ? 443 : 80) ? "\(scheme)://\(lan)" : "\(scheme)://\(lan):\(port)"
        }
        return "\(scheme)://\(host.isEmpty ? "localhost:\(port)" : host)"
    }

    /// The join link: the code people can read, and the key that makes a scanned join a link
    /// join rather than a typed guess.
    func joinURL(code: String, key: String, request: Request) -> String {
        "\(base(for: request))/j/\(code)?k=\(key)"
    }

    static func lanAddress() -> String? {
        NetworkInterface.all().first { $0.isIPv4 && !$0.isLoopback && $0.isUp }?.address
    }
}
