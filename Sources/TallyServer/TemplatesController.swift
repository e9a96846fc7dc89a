import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyRealtime

/// A presenter prepares ahead: a session's polls out as a template file, a template file into a
/// session as drafts, and a whole session duplicated with its polls.
struct TemplatesController {
    let venue: Venue
    let hub: EventHub
    let access: Access

    func addRoutes(to api: APIRoutes) {
        let presenter = api.role(.presenter)
        presenter.get("sessions/:sessionId/template", use: export)
        presenter.post("sessions/:sessionId/template", use: importTemplate)
        // Making a session is the operator's, as `POST /sessions` is.
        api.role(.operator).post("sessions/:sessionId/duplicate", use: duplicate)
    }

    func export(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let template = session.read { state, _ in SessionTemplate(of: state) }
        var response = json(template)
        response.headers[.contentDisposition] = "attachment; filename=\"tally-template-\(session.id).json\""
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// Each refused entry, by position (1 is the first), with the rule's reason.
    struct Refused: Encodable {
        let type = "/problems/template-invalid"
        let title = "Unprocessable Content"
        let status = 422
        let detail: String
        let errors: [Entry]

        struct Entry: Encodable {
            let position: Int
            let detail: String
        }
    }

    struct Imported: Encodable {
        let pollIds: [String]
        let eventId: String
    }

    func importTemplate(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let template = try await decode(SessionTemplate.self, request, context)
        if let refusal = template.refusal { throw Problem(.unprocessableContent, refusal, type: "/problems/template-invalid") }
        let (pollIds, executed) = try await importPolls(template.polls, into: session)
        return json(Imported(pollIds: pollIds, eventId: hub.eventId(executed.last.sequence)), status: .created)
    }

    /// Decides every entry first (all refusals reported together), then imports them all in one
    /// command — all or none.
    private func importPolls(_ entries: [SessionTemplate.Entry], into session: LiveSession) async throws -> ([String], Executed) {
        var rng = SystemRandomNumberGenerator()
        let pollIds = entries.map { _ in IdentifierAlphabet.make(length: 8, using: &rng) }
        let creates = zip(entries, pollIds).map { entry, id in entry.creating(id) }
        let problems = session.read { state, _ in state.importing(creates, limits: venue.limits, now: ServerClock.now()).problems }
        if !problems.isEmpty { throw TemplateRefused(problems: problems) }
        // Decided again by the single writer (the session may have changed meanwhile).
        let executed = try await session.run(.importPolls(creates))
        return (pollIds, executed)
    }

    struct DuplicateBody: Decodable {
        let title: String?
    }

    func duplicate(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard let id = context.parameters.get("sessionId"), IdentifierAlphabet.isWellFormed(id), let original = await venue.findSession(id)
        else { throw Problem(.notFound, "no such session") }
        let body = request.headers[.contentLength] == "0" ? nil : try? await decode(DuplicateBody.self, request, context)
        let (template, nicknames, title) = original.read { state, _ in
            (SessionTemplate(of: state), state.nicknamePolicy, state.title)
        }
        let copyTitle = body?.title ?? (title.count + 7 <= venue.limits.maxTitleLength ? "\(title) (copy)" : title)
        let (session, created) = try await venue.createSession(title: copyTitle, nicknames: nicknames)
        var last = created
        if !template.polls.isEmpty {
            last = try await importPolls(template.polls, into: session).1
        }
        context.logger.info("session duplicated", metadata: ["session": "\(session.id)", "from": "\(original.id)"])
        let presenterToken = access.token(for: .presenter(session.id))
        var response = json(
            SessionsController.SessionCreatedResponse(
                sessionId: session.id, joinCode: session.read { state, _ in state.joinCode.value }, presenterToken: presenterToken,
                displayToken: access.token(for: .display(session.id)), eventId: hub.eventId(last.last.sequence)),
            status: .created)
        response.headers[HTTPField.Name.location] = "/api/v1/sessions/\(session.id)"
        return response
    }
}

/// A template whose entries the rules refused: 422 with each one's position and reason.
struct TemplateRefused: Error, HTTPResponseError {
    let problems: [ImportProblem]
    var status: HTTPResponse.Status { .unprocessableContent }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let refused = TemplatesController.Refused(
            detail: problems.count == 1
                ? "poll \(problems[0].position) cannot be imported: \(problems[0].error)"
                : "\(problems.count) polls cannot be imported; nothing was imported",
            errors: problems.map { .init(position: $0.position, detail: "\($0.error)") })
        var response = json(refused, status: .unprocessableContent)
        response.headers[.contentType] = "application/problem+json"
        return response
    }
}
