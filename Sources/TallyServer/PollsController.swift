import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyEventLog
import TallyRealtime

/// Polls: the presenter creates, opens, closes and reveals them; participants vote.
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
        api.role(.participant).post("sessions/:sessionId/polls/:pollId/votes", use: vote)
    }

    struct CreatePollBody: Decodable {
        let question: String
        let options: [String]
        let kind: PollKind?
        let resultsVisibility: ResultsVisibility?
        let open: Bool?
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
                pollId: pollId, question: body.question, options: body.options, kind: body.kind ?? .single,
                resultsVisibility: body.resultsVisibility ?? .live, openImmediately: body.open ?? false))
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

    struct VoteBody: Decodable { let optionIds: [String] }
    struct VoteResponse: Encodable {
        let pollId: String
        let optionIds: [String]
        let replaced: Bool
        let eventId: String
    }

    func vote(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let participant = try context.caller.requireParticipant()
        if let wait = limits.votesPerParticipant.take(participant) { throw Limits.tooMany(wait, "voting too fast") }
        if let wait = limits.votesPerIP.take(Limits.ip(context)) { throw Limits.tooMany(wait, "too many votes from your network") }
        let pollId = try context.pollId()
        let body = try await decode(VoteBody.self, request, context)
        let cast = try await session.run(.vote(participant: participant, poll: pollId, optionIds: body.optionIds))
        metrics.votes.increment()
        // New or replaced as the session's writer decided it: of two racing first ballots, one is new.
        return json(
            VoteResponse(
                pollId: pollId, optionIds: body.optionIds, replaced: cast.replacedBallot, eventId: hub.eventId(cast.last.sequence)),
            status: cast.replacedBallot ? .ok : .created)
    }
}
