import TallyDomain
import TallyEventLog

extension LiveSession {
    /// Runs a command and returns once its events are durable: the API acknowledges nothing
    /// the log could still lose.
    func run(_ command: SessionCommand) async throws -> Executed {
        let executed = try execute(command)
        try await log.acknowledge(executed)
        return executed
    }
}

extension EventLog {
    /// Waits until `executed` is durable; a log that cannot write any more is a 503.
    func acknowledge(_ executed: Executed) async throws {
        do {
            try await waitUntilDurable(executed.sequence)
        } catch {
            throw Problem(.serviceUnavailable, "the event log cannot accept writes; the appliance needs a restart")
        }
    }
}
