import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOSSL
import Synchronization

/// The venue's certificate (`tls-cert`, `tls-key`): read once at start, so a missing file, a
/// key that is not PEM or a key of another certificate stops the start with a sentence naming
/// the file, instead of failing every phone's handshake later.
struct VenueCertificate: Sendable {
    let tlsConfiguration: TLSConfiguration
    /// When the (leaf) certificate stops being valid; phones refuse it after that.
    let notValidAfter: Date

    /// PEM files are a few KiB; anything far larger is the wrong file.
    static let maxFileBytes = 1 << 20

    init(certificatePath: String, keyPath: String) throws {
        let certificateBytes = try Self.contents(of: certificatePath, what: "the TLS certificate (tls-cert)")
        let keyBytes = try Self.contents(of: keyPath, what: "the TLS private key (tls-key)")
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(certificateBytes)
        } catch {
            throw StartupError("the TLS certificate (tls-cert) \(certificatePath) is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        guard let leaf = chain.first else {
            throw StartupError("the TLS certificate (tls-cert) \(certificatePath) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            throw StartupError(
                "the TLS private key (tls-key) \(keyPath) is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        // Every phone of the last decade speaks TLS 1.2; older versions only add attack surface.
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        do {
            // Building the context checks that the key belongs to the certificate.
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw StartupError("the TLS private key \(keyPath) does not fit the certificate \(certificatePath) (\(error))")
        }
        tlsConfiguration = configuration
        notValidAfter = Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter))
    }

    /// The file's bytes, or a start-up error with the system's reason ("No such file or
    /// directory", "Permission denied").
    static func contents(of path: String, what: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StartupError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StartupError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= maxFileBytes else { throw StartupError("\(what) \(path) is larger than 1 MiB: not a PEM file") }
        }
        return bytes
    }
}

/// The plain-HTTP listener beside the TLS one (`http-redirect-port`): someone who types the
/// box's address, or scans an old http:// QR code, is sent to the same page over https.
struct HTTPSRedirect: HTTPResponder {
    typealias Context = BasicRequestContext
    /// An https `public-url`, if configured: its host is where people are sent.
    let publicURL: String?
    /// The TLS listener's port (known once it listens, when the configured port is 0).
    let tlsPort: BoundPort

    func respond(to request: Request, context: Context) async throws -> Response {
        guard
            let location = Self.location(
                authority: request.head.authority, path: request.uri.path, query: request.uri.query, tlsPort: tlsPort.value,
                publicURL: publicURL)
        else {
            return Response(
                status: .badRequest, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "this address serves https only\n")))
        }
        // 308 keeps the method and body, so a form or an API call is not turned into a GET.
        return Response(status: .permanentRedirect, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// `https://<host>[:port]<path>[?query]`: the host the client asked for (without its
    /// port), or the https public URL's; nil if the host is not a plain host name or address.
    static func location(authority: String?, path: String, query: String?, tlsPort: Int, publicURL: String?) -> String? {
        let base: String
        if let publicURL, publicURL.lowercased().hasPrefix("https://") {
            base = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        } else {
            guard let authority, let host = host(of: authority) else { return nil }
            base = tlsPort == 443 ? "https://\(host)" : "https://\(host):\(tlsPort)"
        }
        let target = path.hasPrefix("/") ? path : "/"
        return base + target + (query.map { $0.isEmpty ? "" : "?\($0)" } ?? "")
    }

    /// The host part of a Host header: a name or IPv4 address (letters, digits, `-`, `.`), or a
    /// bracketed IPv6 address.
    static func host(of authority: String) -> String? {
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            let inside = authority[authority.index(after: authority.startIndex)..<close]
            guard !inside.isEmpty, inside.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
            return "[\(inside)]"
        }
        let name = authority.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard !name.isEmpty, name.utf8.count <= 253,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
        else { return nil }
        return String(name)
    }
}

/// A listener's port, set once it is bound.
final class BoundPort: Sendable {
    private let port: Atomic<Int>
    init(_ configured: Int) { port = Atomic(configured) }
    var value: Int { port.load(ordering: .relaxed) }
    func set(_ value: Int) { port.store(value, ordering: .relaxed) }
}
