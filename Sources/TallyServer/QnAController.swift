import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyEventLog
import TallyRealtime

/// Audience Q&A: the presenter opens, closes and moderates it; participants ask, upvote and
/// withdraw their own questions. Everything goes through the session's single writer.
struct QnAController {
    let hub: EventHub
    let limits: Limits

    func addRoutes(to api: APIRoutes) {
        let presenter = api.role(.presenter)
        presenter.post("sessions/:sessionId/qna/open", use: open)
        presenter.post("sessions/:sessionId/qna/close") { request, context in
            try await command(context, .close)
        }
        for action in QuestionAction.allCases {
            presenter.post("sessions/:sessionId/questions/:questionId/\(action.rawValue)") { request, context in
                try await command(context, .moderate(try context.questionId(), action))
            }
        }
        let participant = api.role(.participant)
        participant.post("sessions/:sessionId/questions", use: ask)
        participant.delete("sessions/:sessionId/questions/:questionId", use: withdraw)
        participant.post("sessions/:sessionId/questions/:questionId/upvote") { try await upvote($0, $1, on: true) }
        participant.delete("sessions/:sessionId/questions/:questionId/upvote") { try await upvote($0, $1, on: false) }
    }

    struct OpenBody: Decodable {
        let moderation: Moderation?
        let anonymous: Bool?
    }

    func open(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // An empty body opens with the defaults (post-moderation, anonymous).
        let body: OpenBody =
            request.headers[.contentLength] == "0"
            ? OpenBody(moderation: nil, anonymous: nil) : try await decode(OpenBody.self, request, context)
        return try await command(context, .open(moderation: body.moderation ?? .post, anonymous: body.anonymous ?? true))
    }

    private func command(_ context: TallyRequestContext, _ command: QnACommand) async throws -> Response {
        let session = try context.caller.requireSession()
        let logged = try await session.run(.qna(command))
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct AskBody: Decodable {
        let text: String
        let name: String?
    }

    struct Asked: Encodable {
        let questionId: QuestionID
        let eventId: String
        let question: QuestionView
    }

    func ask(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let participant = try context.caller.requireParticipant()
        let body = try await decode(AskBody.self, request, context)
        if let wait = limits.questionsPerParticipant.take(participant) {
            throw Limits.tooMany(wait, "asking too often: at most 3 questions a minute")
        }
        var rng = SystemRandomNumberGenerator()
        let questionId = IdentifierAlphabet.make(length: 10, using: &rng)
        let logged = try await session.run(
            .qna(
                .ask(
                    participant: participant, questionId: questionId, text: body.text, name: body.name,
                    askedAt: WireFormat.formatTimestamp(Date()))))
        let view = session.read { state, _ in
            state.qna.question(questionId)!.view(
                upvotes: 0, highlighted: false, for: .participant, viewer: participant, board: state.qna)
        }
        var response = json(Asked(questionId: questionId, eventId: hub.eventId(logged.last.sequence), question: view), status: .created)
        response.headers[.location] = "/api/v1/sessions/\(session.id)/questions/\(questionId)"
        return response
    }

    func withdraw(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let participant = try context.caller.requireParticipant()
        let logged = try await session.run(.qna(.withdraw(participant: participant, questionId: try context.questionId())))
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct Upvoted: Encodable {
        let questionId: QuestionID
        let upvoted: Bool
        let upvotes: Int
        let eventId: String
    }

    /// Idempotent: upvoting twice (or taking back an upvote one never gave) changes nothing and
    /// answers the same, once whatever did change it is durable.
    func upvote(_ request: Request, _ context: TallyRequestContext, on: Bool) async throws -> Response {
        let session = try context.caller.requireSession()
        let participant = try context.caller.requireParticipant()
        if let wait = limits.votesPerParticipant.take(participant) { throw Limits.tooMany(wait, "upvoting too fast") }
        if let wait = limits.votesPerIP.take(Limits.ip(context)) { throw Limits.tooMany(wait, "too many votes from your network") }
        let questionId = try context.questionId()
        let executed = try await session.run(.qna(.upvote(participant: participant, questionId: questionId, on: on)))
        let upvotes = session.read { state, _ in state.qna.upvotes(questionId) }
        return json(Upvoted(questionId: questionId, upvoted: on, upvotes: upvotes, eventId: hub.eventId(executed.sequence)))
    }
}

extension TallyRequestContext {
    func questionId() throws -> QuestionID {
        let id = parameters.get("questionId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id) else { throw Problem(.notFound, "no question with that id in this session") }
        return id
    }
}
