import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TallyDomain

/// The pages people use — join, participant, presenter, display — and their assets, all
/// embedded in the binary (no CDN, no web fonts, nothing fetched from anywhere else).
struct PagesController: Sendable {
    let venue: Venue
    let access: Access
    let publicURL: PublicURL
    let limits: Limits

    func addRoutes(to router: Router<TallyRequestContext>) {
        router.get("") { _, _ in page("join.html") }
        router.get("j/:code") { _, _ in page("join.html") }
        router.get("s/:sessionId") { _, _ in page("participant.html") }
        router.get("presenter") { _, _ in page("presenter.html") }
        router.get("presenter/:sessionId") { _, _ in page("presenter.html") }
        router.get("display") { _, _ in page("display.html") }
        router.get("display/:sessionId") { _, _ in page("display.html") }
        router.get("assets/:file") { _, context in
            let name = context.parameters.get("file") ?? ""
            guard let text = EmbeddedResources.files["web/" + name], !name.hasSuffix(".html") else {
                throw Problem(.notFound, "no such asset")
            }
            return asset(text, type: Self.contentType(name))
        }
        router.get("api/v1/sessions/:sessionId/qr.svg", use: qr)
        router.post("api/v1/display/pair", use: pair)
    }

    static func contentType(_ name: String) -> String {
        if name.hasSuffix(".js") { return "text/javascript; charset=utf-8" }
        if name.hasSuffix(".css") { return "text/css; charset=utf-8" }
        if name.hasSuffix(".svg") { return "image/svg+xml" }
        return "text/html; charset=utf-8"
    }

    private func page(_ name: String) -> Response {
        var response = asset(EmbeddedResources.files["web/" + name] ?? "", type: "text/html; charset=utf-8")
        // Pages always revalidate: a reload after an upgrade gets the new version.
        response.headers[.cacheControl] = "no-cache"
        return response
    }

    private func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The join URL as a QR code, for screens and the presenter.
    func qr(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let id = context.parameters.get("sessionId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id), let session = venue.session(id) else { throw Problem(.notFound, "no such session") }
        let grants = access.grants(of: request, queryToken: request.uri.queryParameters["token"].map(String.init))
        guard Access.viewer(grants, of: id) != nil else {
            throw Access.denied(grants, "the QR code is for this session's presenter, displays and participants")
        }
        let code = session.read { state, _ in state.joinCode.value }
        let url = publicURL.joinURL(code: code, key: JoinLink.key(for: session.id, access.credentials), request: request)
        guard let svg = QRCode.svg(for: url) else {
            throw Problem(.internalServerError, "could not draw the QR code")
        }
        return Response(
            status: .ok, headers: [.contentType: "image/svg+xml", .cacheControl: "private, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: svg)))
    }

    struct Paired: Encodable { let sessionId: String; let displayToken: String }

    /// A screen typed the join code: give it the session's display credential.
    func pair(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // The join code grants a display credential: guessing it is throttled like joining.
        let body = try await decode(APIController.JoinBody.self, request, context)
        let session = try limits.session(joinCode: body.joinCode, from: Limits.ip(context), in: venue)
        guard session.read({ state, _ in state.lifecycle == .active }) else {
            throw Problem(.gone, "this session has ended; ask for the new join code")
        }
        return json(Paired(sessionId: session.id, displayToken: access.token(for: .display(session.id))))
    }
}

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
        if let lan = Self.lanAddress() { return port == (scheme == "https" ? 443 : 80) ? "\(scheme)://\(lan)" : "\(scheme)://\(lan):\(port)" }
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

/// Headers every response carries: pages may run only their own scripts and styles, talk only
/// to this box, and are never framed or sniffed.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    static var contentSecurityPolicy: String {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return response
    }
}

/// CSRF: a browser's state-changing request must come from a page of this box. Browsers send
/// `Origin` on such requests; a mismatch (or `null`) is refused. Clients that authenticate with
/// `Authorization: Bearer` are not browsers riding on cookies and are not checked.
struct SameOriginMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method != .get, request.method != .head, request.headers[.authorization] == nil,
            let origin = request.headers[.origin], !SameOrigin.matches(origin: origin, request: request)
        {
            throw Problem(.forbidden, "cross-site request refused: \(origin) is not this appliance")
        }
        return try await next(request, context)
    }
}

enum SameOrigin {
    /// Whether `origin` (scheme://host[:port]) names the host this request was sent to.
    static func matches(origin: String, request: Request) -> Bool {
        guard origin != "null", let url = URL(string: origin), let host = url.host?.lowercased(),
            let authority = request.head.authority?.lowercased()
        else { return false }
        let defaultPort = url.scheme == "https" ? 443 : 80
        let originHostPort = "\(host):\(url.port ?? defaultPort)"
        let parts = authority.split(separator: ":")
        let requestHostPort = parts.count == 2 ? authority : "\(authority):\(defaultPort)"
        return originHostPort == requestHostPort || "[\(host)]:\(url.port ?? defaultPort)" == requestHostPort
    }
}
