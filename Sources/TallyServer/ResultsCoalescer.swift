import ServiceLifecycle
import Synchronization
import TallyDomain
import TallyEventLog

/// Turns bursts of ballots into `poll.results` (and of upvotes into `question.upvotes`): at most
/// one per poll (per session's Q&A) every `interval`, and always one after the last change (a
/// change arriving while a publish is pending is counted in it; one arriving after schedules
/// the next).
///
/// The timers are child tasks of `run()`, so they belong to the service group: nothing is left
/// sleeping after shutdown. On graceful shutdown the pending results are published at once and
/// made durable before `run()` returns, so displays get the final counts before streams end.
/// Ballots that arrive while the service is not running (before start, after shutdown, or in
/// tests that never start it) publish their results at once, uncoalesced.
final class ResultsCoalescer: Service, Sendable {
    private let interval: Duration
    private let log: any EventLog
    private let state = Mutex(State())
    /// Publishes `run()` schedules; created once, consumed by the one `run()`.
    private let due: AsyncStream<Due>
    private let dueContinuation: AsyncStream<Due>.Continuation

    /// What a publish sends: a poll's results, or the session's changed upvote counts.
    enum Publication: Hashable, Sendable {
        case results(PollID)
        case upvotes

        var command: SessionCommand {
            switch self {
            case .results(let poll): .publishResults(poll)
            case .upvotes: .qna(.publishUpvotes)
            }
        }
    }

    private struct PollKey: Hashable {
        let session: SessionID
        let poll: Publication
    }

    private struct Schedule {
        /// A publish is pending: the next ballot needs nothing more.
        var pending = false
        var lastPublished: ContinuousClock.Instant?
    }

    private struct State {
        var running = false
        var polls: [PollKey: Schedule] = [:]
        /// Sequence of the latest results appended (what a drain waits for).
        var lastAppended: UInt64 = 0
    }

    /// One pending publish: which poll, of which session, after how long.
    private struct Due: Sendable {
        let session: LiveSession
        let poll: Publication
        let delay: Duration
    }

    init(interval: Duration, log: any EventLog) {
        self.interval = interval
        self.log = log
        (due, dueContinuation) = AsyncStream.makeStream(of: Due.self)
    }

    /// A ballot (or an upvote) was logged: make sure a publish of its counts follows.
    func changed(_ poll: Publication, in session: LiveSession) {
        let now = ContinuousClock.now
        let key = PollKey(session: session.id, poll: poll)
        enum Next { case nothing, publishNow, schedule(Duration) }
        let next: Next = state.withLock { state in
            guard state.running else { return .publishNow }
            var schedule = state.polls[key] ?? Schedule()
            guard !schedule.pending else { return .nothing }
            schedule.pending = true
            state.polls[key] = schedule
            guard let last = schedule.lastPublished else { return .schedule(.zero) }
            let due = last.advanced(by: interval)
            return .schedule(due > now ? now.duration(to: due) : .zero)
        }
        switch next {
        case .nothing: break
        case .publishNow: publishSoon(poll, in: session)
        case .schedule(let delay):
            if case .terminated = dueContinuation.yield(Due(session: session, poll: poll, delay: delay)) {
                // run() has returned between the check and the yield: publish here instead.
                publishSoon(poll, in: session)
            }
        }
    }

    /// Between the start of `run()` and graceful shutdown: ballots are coalesced.
    var isRunning: Bool { state.withLock { $0.running } }

    func run() async {
        state.withLock { $0.running = true }
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                // Ends once shutdown has finished the stream and every publish queued before
                // it has its timer (or when the task is cancelled).
                for await due in self.due {
                    group.addTask {
                        // Cancellation (shutdown) cuts the wait short; the results are published anyway.
                        if due.delay > .zero { try? await Task.sleep(for: due.delay) }
                        await self.publish(due.poll, in: due.session)
                    }
                }
            } onGracefulShutdown: {
                // No new timers from here on: later ballots publish their own results.
                self.state.withLock { $0.running = false }
                self.dueContinuation.finish()
            }
            // Wake every timer still sleeping: pending results go out now.
            group.cancelAll()
        }
        state.withLock { $0.running = false }
        // Drained: wait until the last results are durable (and so broadcast) before the
        // services that shut down after this one end the streams.
        let sequence = state.withLock { $0.lastAppended }
        if sequence > 0 { try? await log.waitUntilDurable(sequence) }
    }

    /// Publishes outside a timer: at once on one box (appending is immediate); in a cluster,
    /// from a task of its own (the commit is a round trip to PostgreSQL, and the caller may be
    /// the cluster writer itself, which must not wait for its own next round).
    private func publishSoon(_ poll: Publication, in session: LiveSession) {
        switch session.writer {
        case .embedded:
            markPublished(poll, in: session)
            do {
                guard let sequence = try session.execute(poll.command).events.last?.sequence else { return }
                state.withLock { $0.lastAppended = max($0.lastAppended, sequence) }
            } catch {
                // Nothing to report: a stopped log reports itself, and results are derived data
                // that the next ballot publishes again.
            }
        case .cluster:
            Task { await publish(poll, in: session) }
        }
    }

    /// Appends the current counts (durable when this returns).
    private func publish(_ poll: Publication, in session: LiveSession) async {
        markPublished(poll, in: session)
        do {
            guard let sequence = try await session.submit(poll.command).events.last?.sequence else { return }
            state.withLock { $0.lastAppended = max($0.lastAppended, sequence) }
        } catch {
            // As above: derived data, published again by the next ballot.
        }
    }

    private func markPublished(_ poll: Publication, in session: LiveSession) {
        let key = PollKey(session: session.id, poll: poll)
        state.withLock { state in
            state.polls[key] = Schedule(pending: false, lastPublished: .now)
        }
    }
}
