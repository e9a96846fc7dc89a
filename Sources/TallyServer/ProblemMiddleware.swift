import Hummingbird

/// Turns every error into a problem response, so a client never sees an empty 500, and logs
/// the ones that are the server's fault.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Paths phones and laptops fetch to detect a captive portal.
    static var captiveProbes: Set<String> {
        [
            "/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html", "/connecttest.txt",
            "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt",
        ]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return problem.response()
        } catch let refused as TemplateRefused {
            return try refused.response(from: request, context: context)
        } catch let failure as CommandFailure {
            return Problem.from(failure).response()
        } catch let error as HTTPError {
            // A phone checking for internet (a captive-portal probe) or anyone typing a wrong
            // address into a browser lands on the join page instead of an error.
            if error.status == .notFound, request.method == .get, !request.uri.path.hasPrefix("/api/"),
                request.uri.path != "/events",
                request.headers[.accept]?.contains("text/html") == true
                    || Self.captiveProbes.contains(request.uri.path)
            {
                return Response(status: .found, headers: [.location: "/", .cacheControl: "no-store"])
            }
            let detail: String
            switch error.status {
            case .notFound: detail = "no such route: \(request.method) \(request.uri.path)"
            case .contentTooLarge: detail = "request body is too large"
            default: detail = error.body ?? error.status.reasonPhrase
            }
            return Problem(error.status, detail, headers: error.headers).response()
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            return Problem(error.status, error.status.reasonPhrase).response()
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            return Problem(.internalServerError, "internal error").response()
        }
    }
}
