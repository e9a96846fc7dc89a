import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TallyDomain
import TallyEventLog

/// The presenter's download of a session's results.
struct ExportController {
    let access: Access
    /// One box: ballot times come from its projection (a cluster's exports leave them out).
    let projection: SQLiteProjection?

    func addRoutes(to api: APIRoutes) {
        let presenter = api.role(.presenter)
        presenter.get("sessions/:sessionId/export.csv") { request, context in try export(request, context, csv: true) }
        presenter.get("sessions/:sessionId/export.json") { request, context in try export(request, context, csv: false) }
        presenter.get("sessions/:sessionId/quiz.csv", use: quiz)
    }

    /// A quiz's players (by nickname), their answers, times and points, and the final ranking.
    func quiz(_ request: Request, context: TallyRequestContext) throws -> Response {
        let session = try context.caller.requireSession()
        let (body, title) = session.read { state, _ in (SessionExport.quizCSV(state), state.title) }
        let safe = String(title.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/csv; charset=utf-8",
                .contentDisposition: "attachment; filename=\"tally-quiz-\(safe)-\(session.id).csv\"",
                .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// The presenter's download of the results. In JSON, ballots carry a pseudonym per poll
    /// unless `?linkParticipants=true` asks for one per participant across the session.
    func export(_ request: Request, _ context: TallyRequestContext, csv: Bool) throws -> Response {
        let session = try context.caller.requireSession()
        let scope: ParticipantPseudonyms.Scope
        switch request.uri.queryParameters["linkParticipants"].map(String.init) {
        case nil, "false"?: scope = .perPoll
        case "true"?: scope = .linked
        case let other?: throw Problem(.badRequest, "linkParticipants is true or false, got \"\(other.prefix(40))\"")
        }
        let pseudonyms = access.credentials.pseudonyms(scope)
        let times = csv ? [:] : ((try? projection?.ballotTimes(session: session.id)) ?? [:])
        let (body, title) = session.read { state, _ in
            (csv ? Data(SessionExport.csv(state).utf8) : SessionExport.json(state, times: times, pseudonyms: pseudonyms), state.title)
        }
        let safe = String(title.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        return Response(
            status: .ok,
            headers: [
                .contentType: csv ? "text/csv; charset=utf-8" : "application/json",
                .contentDisposition: "attachment; filename=\"tally-\(safe)-\(session.id).\(csv ? "csv" : "json")\"",
                .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
