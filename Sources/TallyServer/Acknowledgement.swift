import TallyDomain
import TallyEventLog

extension LiveSession {
    /// Runs a command and returns once its events are durable: the API acknowledges nothing
    /// the log could still lose. A refusal or an unavailable log is thrown as `CommandFailure`,
    /// which `ProblemMiddleware` turns into the precise 4xx or a 503.
    func run(_ command: SessionCommand) async throws -> Executed {
        try await submit(command)
    }
}
