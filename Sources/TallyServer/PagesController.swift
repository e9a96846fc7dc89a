import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TallyDomain

/// The pages people use — join, participant, presenter, display — and their assets, all
/// embedded in the binary (no CDN, no web fonts, nothing fetched from anywhere else).
struct PagesController: Sendable {
    func addRoutes(to router: Router<TallyRequestContext>) {
        router.get("") { _, _ in page("join.html") }
        router.get("j/:code") { _, _ in page("join.html") }
        router.get("s/:sessionId") { _, _ in page("participant.html") }
        router.get("presenter") { _, _ in page("presenter.html") }
        router.get("presenter/:sessionId") { _, _ in page("presenter.html") }
        router.get("display") { _, _ in page("display.html") }
        router.get("display/:sessionId") { _, _ in page("display.html") }
        // The page is public like the others; its numbers come from an operator-only stream.
        router.get("operator") { _, _ in page("operator.html") }
        router.get("assets/:file") { _, context in
            let name = context.parameters.get("file") ?? ""
            guard let text = EmbeddedResources.files["web/" + name], !name.hasSuffix(".html") else {
                throw Problem(.notFound, "no such asset")
            }
            return asset(text, type: Self.contentType(name))
        }
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
}
