import Foundation
import Hummingbird
import TallyDomain
import TallyRealtime

/// The quiz around the polls: the leaderboard everyone may read, and the presenter's reset
/// for a new round. (Quiz questions themselves are polls: `PollsController`.)
struct QuizController {
    let hub: EventHub

    func addRoutes(to api: APIRoutes) {
        api.role(.viewer).get("sessions/:sessionId/leaderboard", use: leaderboard)
        api.role(.presenter).post("sessions/:sessionId/leaderboard/reset", use: reset)
    }

    /// The presenter and displays get every player; a participant the top ten and their own row.
    func leaderboard(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        guard let role = context.caller.role else { throw Problem(.internalServerError, "internal error") }
        let participant = context.caller.participant
        // Copied out under the lock, ranked outside it.
        let state = session.read { state, _ in state }
        return json(state.leaderboard(for: role, participant: participant))
    }

    /// Every score back to zero: the questions asked so far no longer count.
    func reset(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let session = try context.caller.requireSession()
        let logged = try await session.run(.resetScores)
        context.logger.info("quiz scores reset", metadata: ["session": "\(session.id)"])
        return json(EventAck(eventId: hub.eventId(logged.sequence)))
    }
}
