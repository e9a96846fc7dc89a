import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyEventLog
import TallyRealtime

/// Polls: the presenter creates, opens, closes, reveals and moderates them; participants vote;
/// everyone taking part may page through an open poll's answers.
struct PollsController {
    let hub: EventHub
    let metrics: ServerMetrics
    let limits: Limits

    func addRoutes(to api: APIRoutes) {
        let presenter = api.role(.presenter)
        presenter.post("sessions/:sessionId/polls", use: createPoll)
        presenter.post("sessions/:sessionId/polls/:pollId/open") { try await pollCommand($0, $1, SessionCommand.openPoll) }
        presenter.post("sessions/:sessionId/polls/:pollId/close") { try await pollCommand($0, $1, SessionCommand.closePoll) }
        presenter.post("sessions/:sessionId/polls/:pollId/reveal") { try await pollCommand($0, $1, SessionCommand.revealPoll) }
        presenter.post("sessions/:sessionId/polls/:pollId/words/hide") { try await moderateWord($0, $1, ModerationAction.hideWord) }
        presenter.post("sessions/:sessionId/polls/:pollId/words/unhide") { try await moderateWord($0, $1, ModerationAction.unhideWord) }
        presenter.post("sessions/:sessionId/polls/:pollId/answers/:answerId/hide") {
            try await moderateAnswer($0, $1, ModerationAction.hideAnswer)
        }
        presenter.post("sessions/:sessionId/polls/:pollId/answers/:answerId/unhide") {
            try await moderateAnswer($0, $1, ModerationAction.unhideAnswer)
        }
        presenter.post("sessions/:sessionId/polls/:pollId/answers/:answerId/approve") {
            try await moderateAnswer($0, $1, ModerationAction.approveAnswer)
        }
        api.role(.participant).post("sessions/:sessionId/polls/:pollId/votes", use: vote)
        api.role(.viewer).get("sessions/:sessionId/polls/:pollId/answers", use: answers)
    }

    struct CreatePollBody: Decodable {
        let question: String
        let options: [String]?
        let kind: PollKind?
        let resultsVisibility: ResultsVisibility?
        let open: Bool?
        let scale: ScaleSettings?
        let maxWords: Int?
        let maxAnswers: Int?
        let moderation: Moderation?
        let quiz: QuizSettings?
    }

    struct PollCreatedResponse: Encodable {
        let pollId: String
        let eventId: String
        let poll: Poll
    }

    func createPoll(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let body = try await decode(CreatePollBody.self, request, context)
        var rng = SystemRandomNumberGenerator()
        let pollId = IdentifierAlphabet.make(length: 8, using: &rng)
        let command = SessionCommand.createPoll(
            .init(
                pollId: pollId, question: body.question, options: body.options ?? [], kind: body.kind ?? .single,
                resultsVisibility: body.resultsVisibility ?? .live, openImmediately: body.open ?? false,
                scale: body.scale, maxWords: body.maxWords, maxAnswers: body.maxAnswers, moderation: body.moderation,
                quiz: body.quiz))
        let logged = try await session.run(command)
        let poll = session.read { state, _ in state.poll(pollId)! }
        var response = json(
            PollCreatedResponse(pollId: pollId, eventId: hub.eventId(logged.last.sequence), poll: poll), status: .created)
        response.headers[.location] = "/api/v1/sessions/\(session.id)/polls/\(pollId)"
        return response
    }

    func pollCommand(
        _ request: Request, _ context: TallyRequestContext, _ command: (PollID) -> SessionCommand
    ) async throws -> Response {
        let session = try context.caller.requireSession()
        let pollId = try context.pollId()
        let logged = try await session.run(command(pollId))
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    struct WordBody: Decodable { let text: String }

    func moderateWord(
        _ request: Request, _ context: TallyRequestContext, _ action: (String) -> ModerationAction
    ) async throws -> Response {
        let session = try context.caller.requireSession()
        let pollId = try context.pollId()
        let body = try await decode(WordBody.self, request, context)
        let logged = try await session.run(.moderate(pollId, action(body.text)))
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    func moderateAnswer(
        _ request: Request, _ context: TallyRequestContext, _ action: (AnswerID) -> ModerationAction
    ) async throws -> Response {
        let session = try context.caller.requireSession()
        let pollId = try context.pollId()
        let answerId = try context.answerId()
        let logged = try await session.run(.moderate(pollId, action(answerId)))
        return json(EventAck(eventId: hub.eventId(logged.last.sequence)))
    }

    /// A ballot of any kind: exactly one of its fields, the one the poll's kind takes.
    struct VoteBody: Decodable {
        let optionIds: [String]?
        let value: Int?
        let ranking: [String]?
        let words: [String]?
        let text: String?
        /// With `text`: replace this answer of mine instead of adding one.
        let answerId: String?

        func input(newAnswerId: AnswerID) throws -> BallotInput {
            var inputs: [BallotInput] = []
            if let optionIds { inputs.append(.options(optionIds)) }
            if let value { inputs.append(.value(value)) }
            if let ranking { inputs.append(.ranking(ranking)) }
            if let words { inputs.append(.words(words)) }
            if let text {
                if let answerId, !IdentifierAlphabet.isWellFormed(answerId) {
                    throw Problem(.badRequest, "answerId is not an answer id")
                }
                inputs.append(.text(text, answerId: newAnswerId, replacing: answerId))
            } else if answerId != nil {
                throw Problem(.badRequest, "answerId goes with text: it names the answer the text replaces")
            }
            guard inputs.count == 1 else {
                throw Problem(
                    .badRequest,
                    inputs.isEmpty
                        ? "send a ballot: optionIds, value, ranking, words or text, as the poll's kind takes"
                        : "send only one of optionIds, value, ranking, words and text")
            }
            return inputs[0]
        }
    }

    /// The ballot as recorded, echoed back: the field the poll's kind takes.
    struct VoteResponse: Encodable {
        let pollId: String
        let replaced: Bool
        let eventId: String
        var optionIds: [String]?
        var value: Int?
        var ranking: [String]?
        var words: [String]?
        var answer: SessionView.PollView.MyAnswer?
    }

    func vote(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let participant = try context.caller.requireParticipant()
        if let wait = limits.votesPerParticipant.take(participant) { throw Limits.tooMany(wait, "voting too fast") }
        if let wait = limits.votesPerIP.take(Limits.ip(context)) { throw Limits.tooMany(wait, "too many votes from your network") }
        let pollId = try context.pollId()
        let body = try await decode(VoteBody.self, request, context)
        var rng = SystemRandomNumberGenerator()
        let input = try body.input(newAnswerId: IdentifierAlphabet.make(length: 10, using: &rng))
        let cast = try await session.run(.vote(participant: participant, poll: pollId, ballot: input))
        metrics.votes.increment()
        var response = VoteResponse(pollId: pollId, replaced: cast.replacedBallot, eventId: hub.eventId(cast.last.sequence))
        for logged in cast.events {
            guard case .ballotCast(let recorded) = logged.event else { continue }
            switch recorded.ballot {
            case .choice(let ids): response.optionIds = ids
            case .scale(let value): response.value = value
            case .ranking(let ids): response.ranking = ids
            case .words(let words): response.words = words.map(\.text)
            case .answers(let answers):
                response.answer = answers.last.map { .init(answerId: $0.answerId, text: $0.text) }
            }
        }
        // New or replaced as the session's writer decided it: of two racing first ballots, one is new.
        return json(response, status: cast.replacedBallot ? .ok : .created)
    }

    struct AnswerPage: Encodable {
        let answers: [PollResults.AnswerEntry]
        /// Pass as `after` for the next page; null on the last.
        let next: AnswerID?

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(answers, forKey: .answers)
            try c.encode(next, forKey: .next)
        }
        enum CodingKeys: String, CodingKey { case answers, next }
    }

    /// An open poll's answers, oldest first, a page at a time. The presenter gets every answer
    /// (moderation marked); displays and participants the ones shown to the room, and only once
    /// the poll's results are visible to them.
    func answers(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let pollId = try context.pollId()
        let role = context.caller.role ?? .participant
        let query = request.uri.queryParameters
        let after = query["after"].map(String.init)
        if let after, !IdentifierAlphabet.isWellFormed(after) { throw Problem(.badRequest, "after is not an answer id") }
        var limit = 100
        if let raw = query["limit"] {
            guard let n = Int(raw), (1...500).contains(n) else { throw Problem(.badRequest, "limit must be 1 to 500") }
            limit = n
        }
        let page: Result<AnswerPage, Problem> = session.read { state, _ in
            guard let poll = state.poll(pollId), role == .presenter || poll.state != .draft else {
                return .failure(Problem(.notFound, "no poll \(pollId) in this session"))
            }
            guard poll.kind == .open else {
                return .failure(Problem(.conflict, "poll \(pollId) is a \(poll.kind.rawValue) poll; only open polls have answers"))
            }
            guard role == .presenter || poll.resultsVisibleToParticipants else {
                return .failure(Problem(.forbidden, "the answers are hidden until the presenter reveals them"))
            }
            do throws(DomainError) {
                let (answers, next) = try state.answers(
                    of: pollId, for: role == .presenter ? .presenter : .room, after: after, limit: limit)
                return .success(AnswerPage(answers: answers, next: next))
            } catch {
                return .failure(Problem(.badRequest, error.description))
            }
        }
        return json(try page.get())
    }
}
