import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TallyDomain

/// The server's clock for timing quiz questions: the wall clock when the process started,
/// advanced by the monotonic clock since. A wall-clock jump during a run (NTP, a person setting
/// the date) cannot shorten a countdown or change a score; a restart starts from the wall clock
/// again, which is what a stored `closesAt` is compared with — but never from before the newest
/// event in the log (`start(notBefore:)`): a box without a real-time clock that boots with its
/// clock behind would otherwise keep a question open for as long as the clock is behind.
final class ServerClock: Sendable {
    /// The process's clock (one server per process; in-process tests share it).
    static let shared = ServerClock()

    private let anchor = Mutex((wall: Date(), monotonic: ContinuousClock.now))

    /// At start, before any command: the newest time the log has seen.
    func start(notBefore newest: Date?) {
        anchor.withLock { $0 = (max(Date(), newest ?? .distantPast), ContinuousClock.now) }
    }

    func now() -> Date {
        let (wall, monotonic) = anchor.withLock { ($0.wall, $0.monotonic) }
        let (seconds, attoseconds) = monotonic.duration(to: .now).components
        return wall.addingTimeInterval(Double(seconds) + Double(attoseconds) / 1e18)
    }

    static func start(notBefore newest: Date?) { shared.start(notBefore: newest) }
    static func now() -> Date { shared.now() }
}

/// Closes quiz questions at their `closesAt` with no presenter action: a timer per open
/// question, set when it opens and again at start for one that was open when the box stopped
/// (which closes at once when its time has passed).
///
/// The timers are child tasks of `run()`, so shutdown leaves none behind; a question whose
/// timer was cancelled by shutdown is closed after the restart. Ballots after `closesAt` are
/// refused by the session's rules whether or not the close is written yet.
final class Countdowns: Service, Sendable {
    private let due: AsyncStream<Due>
    private let continuation: AsyncStream<Due>.Continuation
    private let logger: Logger

    private struct Due: Sendable {
        let session: LiveSession
        let pollId: PollID
        /// Milliseconds since 1970.
        let closesAt: Int64
    }

    init(logger: Logger = Logger(label: "tally.quiz")) {
        self.logger = logger
        (due, continuation) = AsyncStream.makeStream(of: Due.self)
    }

    /// A quiz question opened (or was found open at start): close it at `closesAt`.
    func schedule(_ pollId: PollID, closesAt: Int64, in session: LiveSession) {
        continuation.yield(Due(session: session, pollId: pollId, closesAt: closesAt))
    }

    func run() async {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await due in self.due {
                    group.addTask {
                        let wait = due.closesAt - EventTime.milliseconds(ServerClock.now())
                        if wait > 0 {
                            // Cancelled: the box is stopping; the restart closes the question.
                            do { try await Task.sleep(for: .milliseconds(wait)) } catch { return }
                        }
                        await self.close(due)
                    }
                }
            } onGracefulShutdown: {
                self.continuation.finish()
            }
            group.cancelAll()
        }
    }

    private func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// Closes the question unless someone did first, and logs how late after `closesAt` the
    /// close was durable (and so on its way to the screens). A log that cannot take the close is
    /// tried again (backing off to once a second) until it does or the box stops — the restart
    /// then closes it; meanwhile ballots are refused by time alone.
    private func close(_ due: Due) async {
        var wait = Duration.milliseconds(50)
        var reported = false
        while true {
            do throws(CommandFailure) {
                let start = ContinuousClock.now
                let executed = try await due.session.submit(.closePoll(due.pollId))
                let decided = ContinuousClock.now
                logger.info(
                    "quiz question closed on time",
                    metadata: [
                        "session": "\(due.session.id)", "poll": "\(due.pollId)", "events": "\(executed.events.count)",
                        "late_ms": "\(EventTime.milliseconds(ServerClock.now()) - due.closesAt)",
                        "durable_ms": "\(milliseconds(start.duration(to: decided)))",
                    ])
                return
            } catch {
                // Refused: closed already (by the presenter, or by opening the next question).
                guard case .logUnavailable(let problem) = error else { return }
                if !reported {
                    reported = true
                    logger.error(
                        "could not close a quiz question on time; trying again",
                        metadata: ["session": "\(due.session.id)", "poll": "\(due.pollId)", "error": "\(problem)"])
                }
                do { try await Task.sleep(for: wait) } catch { return }
                wait = min(wait * 2, .seconds(1))
            }
        }
    }
}
