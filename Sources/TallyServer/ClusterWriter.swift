import Foundation
import Logging
import Synchronization
import TallyCluster
import TallyDomain
import TallyEventLog

/// The cluster's PostgreSQL could not be used for a command: a 503 with `Retry-After`, and
/// nothing acknowledged (the command may or may not have been committed; a retry is safe for
/// votes and upvotes, which replace or repeat).
struct StoreUnavailable: Error, CustomStringConvertible {
    static let retryAfterSeconds = 2
    /// For the logs only: PostgreSQL's own messages and the database's address are not for
    /// whoever sent the vote.
    let reason: String
    var description: String { "the cluster's database does not answer; try again in a moment" }
}

/// One instance's single path from command to history in a cluster.
///
/// Commands from any of this instance's requests queue here; one loop takes whatever is
/// queued, takes the log's lock in PostgreSQL (`ClusterStore.appendUnderLock`), first folds
/// what other instances committed since it last looked (so it decides on the state every
/// instance agrees on), then decides every queued command — on copies of the sessions' states
/// — appends the events and commits. Only then are the copies installed, the callers answered
/// and the events handed to this instance's subscribers. A failed transaction leaves the live
/// state as it was.
///
/// The same loop catches up on other instances' commits outside the lock: on a notification,
/// on a gap, after PostgreSQL comes back, and once a second in any case (the probe that keeps
/// `/readyz` true to PostgreSQL's health). Everything an instance folds, it folds here, in
/// sequence order, so its subscribers see one order: the log's.
final class ClusterWriter: Sendable {
    let store: ClusterStore
    let log: ClusterLog
    let settings: ClusterSettings
    let logger: Logger
    /// Commands decided per transaction at most (a burst waits for the next round trip).
    static let batchLimit = 1_024
    private let venueSlot = Mutex<Venue?>(nil)
    private let inbox = Mutex(Inbox())
    private let (wakes, waker) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    /// Per session, the position of its newest event (`tally_events.session_seq`); the loop's own.
    private let positions = Mutex<[SessionID: Int32]>([:])
    private let folding = Mutex(())
    private let headRead = Mutex<Task<UInt64?, Never>?>(nil)
    /// Ballots (and upvotes) whose results no `poll.results` (`question.upvotes`) has followed
    /// yet, with when they were seen: the instance that took them publishes within 50 ms; if it
    /// died first (or PostgreSQL blinked), whoever notices a second later publishes instead.
    private let unpublished = Mutex<[Unpublished: ContinuousClock.Instant]>([:])

    private struct Unpublished: Hashable {
        let session: SessionID
        let publication: ResultsCoalescer.Publication
    }
    /// What this instance must do about another instance's events beyond folding them (end
    /// the streams that rested on a link rotated there).
    private let foreignHook = Mutex<(@Sendable ([LoggedEvent]) -> Void)?>(nil)
    /// Told after the settings were read again (a sign-out elsewhere must count here at once).
    private let settingsHook = Mutex<(@Sendable () -> Void)?>(nil)

    private struct Submission: Sendable {
        let session: LiveSession
        let creating: Bool
        let decide: LiveSession.Decide
        let answer: @Sendable (Result<Executed, CommandFailure>) -> Void
    }

    private struct Inbox {
        /// The loop has ended (shutdown): nobody would answer what is queued from now on.
        var stopped = false
        var pending: [Submission] = []
        var catchUp = false
        /// Callers waiting until the instance has folded through a sequence.
        var waiting: [(UInt64, UUID, CheckedContinuation<Void, Never>)] = []
    }

    init(store: ClusterStore, log: ClusterLog, settings: ClusterSettings, logger: Logger) {
        self.store = store
        self.log = log
        self.settings = settings
        self.logger = logger
    }

    func attach(_ venue: Venue) { venueSlot.withLock { $0 = venue } }
    func onForeignEvents(_ hook: @escaping @Sendable ([LoggedEvent]) -> Void) { foreignHook.withLock { $0 = hook } }
    func onSettingsChanged(_ hook: @escaping @Sendable () -> Void) { settingsHook.withLock { $0 = hook } }

    private func reloadSettings() async {
        guard (try? await settings.reload()) != nil else { return }
        settingsHook.withLock { $0 }?()
    }
    private var venue: Venue {
        guard let venue = venueIfAttached else { preconditionFailure("the cluster writer runs only once attached to its venue") }
        return venue
    }
    var venueIfAttached: Venue? { venueSlot.withLock { $0 } }

    /// Notes where each session stands, from the events folded at start.
    func noteFolded(_ row: ClusterStore.Row) {
        positions.withLock { $0[row.logged.sessionId] = row.sessionSequence }
    }

    // MARK: - Submitting

    /// Decides `decide` on `session` under the cluster's lock and returns once committed.
    func submit(_ session: LiveSession, creating: Bool = false, decide: @escaping LiveSession.Decide) async throws(CommandFailure)
        -> Executed
    {
        // While PostgreSQL is known to be down, refuse at once: a phone should hear "try again"
        // in milliseconds, not after a connection timeout. The probe clears this within a second.
        if let outage = log.storeOutage { throw .logUnavailable(StoreUnavailable(reason: outage)) }
        let result: Result<Executed, CommandFailure> = await withCheckedContinuation { continuation in
            let submission = Submission(session: session, creating: creating, decide: decide) { continuation.resume(returning: $0) }
            let queued = inbox.withLock { inbox in
                if !inbox.stopped { inbox.pending.append(submission) }
                return !inbox.stopped
            }
            if queued {
                waker.yield()
            } else {
                submission.answer(.failure(.logUnavailable(StoreUnavailable(reason: "this instance is stopping"))))
            }
        }
        return try result.get()
    }

    /// Asks the loop to read what other instances committed (a notification arrived).
    func requestCatchUp() {
        inbox.withLock { $0.catchUp = true }
        waker.yield()
    }

    /// Waits (at most `limit`) until this instance has folded every event through `sequence`.
    func waitUntilFolded(_ sequence: UInt64, limit: Duration = .seconds(2)) async {
        guard log.durableSequence < sequence else { return }
        requestCatchUp()
        let id = UUID()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = inbox.withLock { inbox -> Bool in
                if log.durableSequence >= sequence { return true }
                inbox.waiting.append((sequence, id, continuation))
                return false
            }
            if ready {
                continuation.resume()
                return
            }
            // The bound: whoever comes first (a fold or this timer) takes the waiter out and
            // resumes it; the other finds it gone.
            Task {
                try? await Task.sleep(for: limit)
                let expired = self.inbox.withLock { inbox -> CheckedContinuation<Void, Never>? in
                    guard let index = inbox.waiting.firstIndex(where: { $0.1 == id }) else { return nil }
                    return inbox.waiting.remove(at: index).2
                }
                expired?.resume()
            }
        }
    }

    /// Waits until this instance has folded everything committed when this was called
    /// (read-your-writes for a client whose previous request went to another instance).
    func catchUpToHead() async {
        // With PostgreSQL away there is nothing newer to be had; answer from what is here.
        guard log.storeOutage == nil else { return }
        // Callers arriving together share one read of the head: a flood of unknown ids or join
        // codes costs PostgreSQL one query per round trip, not one each.
        let read = headRead.withLock { current -> Task<UInt64?, Never> in
            if let current { return current }
            let task = Task { [store] in try? await store.head() }
            current = task
            return task
        }
        let head = await read.value
        headRead.withLock { if $0 == read { $0 = nil } }
        guard let head, head > log.durableSequence else { return }
        await waitUntilFolded(head)
    }

    // MARK: - The loop

    /// Runs until cancelled: commits what is queued, catches up, probes PostgreSQL.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [waker] in
                // The probe: at least once a second the loop looks at the table.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    self.inbox.withLock { $0.catchUp = true }
                    waker.yield()
                }
            }
            group.addTask { await self.loop() }
            await group.next()
            group.cancelAll()
        }
        // Nobody is left to answer: whoever still waits hears that the instance is stopping.
        let (pending, waiting) = inbox.withLock { inbox in
            defer {
                inbox.stopped = true
                inbox.pending = []
                inbox.waiting = []
            }
            return (inbox.pending, inbox.waiting)
        }
        for submission in pending { submission.answer(.failure(.logUnavailable(StoreUnavailable(reason: "this instance is stopping")))) }
        for (_, _, continuation) in waiting { continuation.resume() }
    }

    private func loop() async {
        for await _ in wakes {
            while !Task.isCancelled {
                let (batch, catchUp) = inbox.withLock { inbox in
                    let batch = Array(inbox.pending.prefix(Self.batchLimit))
                    inbox.pending.removeFirst(batch.count)
                    defer { inbox.catchUp = false }
                    return (batch, inbox.catchUp)
                }
                if !batch.isEmpty, let outage = log.storeOutage {
                    // PostgreSQL is known to be away: what was queued hears so now, not one
                    // time-out per batch later.
                    for submission in batch { submission.answer(.failure(.logUnavailable(StoreUnavailable(reason: outage)))) }
                } else if !batch.isEmpty {
                    await commit(batch)
                } else if catchUp {
                    await catchUpOutsideLock()
                    break
                } else {
                    break
                }
            }
            if Task.isCancelled { return }
        }
    }

    /// One session's working copy during a transaction.
    private struct Working {
        let session: LiveSession
        var state: SessionState?
        var lastSequence: UInt64
        var position: Int32
        var creating: Bool
    }

    /// What a transaction decided: rows to write, and each submission's outcome.
    private final class Round: @unchecked Sendable {
        // Touched by the transaction's closure, then (once it returned) by the loop's task; a
        // round given up on (timed out) is never read again and refuses to go on.
        let abandoned = Atomic<Bool>(false)
        var working: [SessionID: Working] = [:]
        var outcomes: [Result<Executed, CommandFailure>] = []
        var rows: [ClusterStore.Row] = []
    }

    private func commit(_ batch: [Submission]) async {
        let round = Round()
        do {
            _ = try await store.appendUnderLock { [self] transaction in
                // Given up on while waiting for the lock: the callers have their answer already.
                if round.abandoned.load(ordering: .acquiring) { throw ClusterStoreError("abandoned") }
                // Others committed since this instance last looked: fold their events first.
                let folded = log.durableSequence
                if transaction.head > folded {
                    fold(try await transaction.events(after: folded))
                } else if transaction.head < folded {
                    throw ClusterStoreError(
                        "the database's log ends at \(transaction.head), before what this instance has seen (\(folded)): was the database replaced? Restart every instance."
                    )
                }
                round.working = [:]
                round.outcomes = []
                round.rows = []
                var next = transaction.head
                let positions = self.positions.withLock { $0 }
                for submission in batch {
                    let id = submission.session.id
                    var working =
                        round.working[id]
                        ?? {
                            let (state, last) = submission.session.writerSnapshot()
                            return Working(
                                session: submission.session, state: state, lastSequence: last, position: positions[id] ?? 0,
                                creating: submission.creating)
                        }()
                    switch LiveSession.decision(submission.decide, on: working.state, now: ServerClock.now()) {
                    case .failure(let refusal):
                        round.outcomes.append(.failure(.refused(refusal)))
                    case .success(let decided):
                        var logged: [LoggedEvent] = []
                        let now = Date()
                        for event in decided.events {
                            next += 1
                            working.position += 1
                            let entry = LoggedEvent(sequence: next, sessionId: id, timestamp: now, event: event)
                            logged.append(entry)
                            round.rows.append(ClusterStore.Row(logged: entry, sessionSequence: working.position))
                            LiveSession.apply(event, to: &working.state)
                        }
                        if let last = logged.last { working.lastSequence = last.sequence }
                        round.outcomes.append(
                            .success(Executed(events: logged, replacedBallot: decided.replaced, sequence: working.lastSequence)))
                    }
                    round.working[id] = working
                }
                // Given up on meanwhile: roll back rather than commit what nobody will hear of.
                if round.abandoned.load(ordering: .acquiring) { throw ClusterStoreError("abandoned") }
                return round.rows
            }
        } catch {
            round.abandoned.store(true, ordering: .releasing)
            let reason = ClusterStore.describe(error)
            logger.error("could not commit to the cluster's database", metadata: ["commands": "\(batch.count)", "error": "\(reason)"])
            log.storeFailed(reason)
            // Nothing was acknowledged (a refusal among them is refused again on the retry). The
            // transaction may have committed all the same (the connection dropped during COMMIT):
            // the next catch-up folds it then, like any other instance's events.
            let queued = inbox.withLock { inbox in
                defer { inbox.pending = [] }
                return inbox.pending
            }
            for submission in batch + queued { submission.answer(.failure(.logUnavailable(StoreUnavailable(reason: reason)))) }
            requestCatchUp()
            return
        }
        log.storeAnswered()
        // Committed: install the copies, register new sessions, then tell the subscribers —
        // before anyone is answered, so a reply's event is never ahead of the streams.
        for working in round.working.values where !round.rows.isEmpty || working.creating {
            guard working.state != nil else { continue }
            working.session.install(state: working.state, lastSequence: working.lastSequence)
            if working.creating, round.rows.contains(where: { $0.logged.sessionId == working.session.id }) {
                venue.addCreated(working.session)
            }
        }
        positions.withLock { positions in
            for row in round.rows { positions[row.logged.sessionId] = row.sessionSequence }
        }
        delivered(round.rows.map(\.logged))
        for (submission, outcome) in zip(batch, round.outcomes) {
            if case .success(let executed) = outcome { submission.session.committed(executed) }
            submission.answer(outcome)
        }
    }

    /// Reads other instances' commits outside the lock (a notification, a gap, the probe).
    private func catchUpOutsideLock() async {
        do {
            while true {
                let rows = try await store.events(after: log.durableSequence)
                fold(rows)
                if rows.count < 5_000 { break }
            }
            if log.storeOutage != nil {
                log.storeAnswered()
                logger.notice("the cluster's database answers again")
                await reloadSettings()
            }
            log.noteOldest(try? await store.oldest())
            publishOverdue()
        } catch {
            let reason = ClusterStore.describe(error)
            if log.storeOutage == nil {
                logger.error("the cluster's database does not answer", metadata: ["error": "\(reason)"])
            }
            log.storeFailed(reason)
        }
    }

    /// Results nobody published a second after their ballots: published from here, once (a
    /// later ballot arms it again).
    private func publishOverdue() {
        let now = ContinuousClock.now
        let overdue = unpublished.withLock { unpublished -> [Unpublished] in
            let due = unpublished.filter { $0.value.duration(to: now) > .seconds(1) }.map(\.key)
            for key in due { unpublished[key] = nil }
            return due
        }
        guard let venue = venueIfAttached else { return }
        for key in overdue {
            guard let session = venue.session(key.session) else { continue }
            logger.notice("publishing results another instance did not", metadata: ["session": "\(key.session)"])
            session.republish(key.publication)
        }
    }

    /// Other instances' committed events, in order: into the sessions, then to subscribers.
    /// One fold at a time (a transaction given up on may still be folding when the loop goes on).
    private func fold(_ rows: [ClusterStore.Row]) {
        guard !rows.isEmpty else { return }
        folding.withLock { _ in foldNow(rows) }
    }

    private func foldNow(_ rows: [ClusterStore.Row]) {
        let folded = log.durableSequence
        let fresh = rows.filter { $0.logged.sequence > folded }
        guard let first = fresh.first else { return }
        if first.logged.sequence != folded + 1 {
            logger.critical(
                "events missing in the cluster's log", metadata: ["from": "\(folded + 1)", "to": "\(first.logged.sequence - 1)"])
        }
        let venue = self.venue
        let events = fresh.map(\.logged)
        venue.recover(from: events)
        positions.withLock { positions in
            for row in fresh { positions[row.logged.sessionId] = row.sessionSequence }
        }
        // A quiz question another instance opened closes on time here too, should that
        // instance die (the first close wins; the others are refused, quietly).
        for event in events {
            if case .pollOpened(let opened) = event.event { venue.session(event.sessionId)?.scheduleCountdown(opened) }
        }
        delivered(events)
        foreignHook.withLock { $0 }?(events)
    }

    private func delivered(_ events: [LoggedEvent]) {
        guard !events.isEmpty else { return }
        log.delivered(events)
        let now = ContinuousClock.now
        unpublished.withLock { unpublished in
            for logged in events {
                switch logged.event {
                case .ballotCast(let cast): unpublished[.init(session: logged.sessionId, publication: .results(cast.pollId))] = now
                case .pollResults(let published):
                    unpublished[.init(session: logged.sessionId, publication: .results(published.results.pollId))] = nil
                case .questionUpvoted: unpublished[.init(session: logged.sessionId, publication: .upvotes)] = now
                case .questionUpvotes: unpublished[.init(session: logged.sessionId, publication: .upvotes)] = nil
                default: break
                }
            }
        }
        let through = log.durableSequence
        let ready = inbox.withLock { inbox in
            let ready = inbox.waiting.filter { $0.0 <= through }.map(\.2)
            inbox.waiting.removeAll { $0.0 <= through }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    // MARK: - Listening

    /// Listens for the other instances' notifications until cancelled.
    func listen(onLimit: @escaping @Sendable (Substring, String) -> Void) async {
        await store.listen(
            connected: {
                self.log.listening(nil)
                self.logger.info("listening for the other instances", metadata: ["store": "\(self.store.address)"])
                // Anything committed while this instance was not listening is read now.
                self.requestCatchUp()
                await self.reloadSettings()
            },
            disconnected: { reason in
                if self.log.outage == nil { self.logger.error("lost the cluster's notifications", metadata: ["error": "\(reason)"]) }
                self.log.listening(reason)
                // Most likely PostgreSQL itself went away: refuse commands at once rather than
                // after a connection timeout each. The next probe that reaches it clears this.
                self.log.storeFailed(reason)
            },
            notified: { payload in
                let parts = payload.split(separator: " ", maxSplits: 2)
                switch parts.first {
                case "e":
                    // Committed by this instance already folded; else catch up (the gap check
                    // is the fold's: it reads everything after what this instance has).
                    if parts.count == 3, let to = UInt64(parts[2]), to <= self.log.durableSequence { return }
                    self.requestCatchUp()
                case "s":
                    Task { await self.reloadSettings() }
                case "l":
                    if parts.count == 3 { onLimit(parts[1], String(parts[2])) }
                default:
                    break
                }
            })
    }
}

/// A cluster instance's moving parts beside the HTTP server: the connection pool, the writer's
/// loop and the listener. Started once the routes exist; stopped after every service.
final class ClusterParts: Sendable {
    let store: ClusterStore
    let writer: ClusterWriter
    let logger: Logger
    /// Who this instance is in notifications (so it skips its own rate-limit charges).
    let instance: String
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(store: ClusterStore, writer: ClusterWriter, pool: Task<Void, Never>, logger: Logger) {
        self.store = store
        self.writer = writer
        self.logger = logger
        var rng = SystemRandomNumberGenerator()
        self.instance = IdentifierAlphabet.make(length: 8, using: &rng)
        tasks.withLock { $0 = [pool] }
    }

    func start(limits: Limits) {
        let loop = Task { await writer.run() }
        let listener = Task { [writer, instance] in
            await writer.listen { kind, rest in
                // `<kind>.<instance> <address>`: another instance's charge.
                let parts = kind.split(separator: ".")
                guard parts.count == 2, parts[1] != instance, let charge = LimitCharge(kind: parts[0], address: rest),
                    let venue = writer.venueIfAttached
                else { return }
                limits.count(charge, in: venue)
            }
        }
        tasks.withLock { $0.append(contentsOf: [loop, listener]) }
    }

    /// Tells the other instances of a rate-limit charge (fire and forget: a lost one costs an
    /// attacker's rate one guess, never a legitimate request anything).
    func share(_ charge: LimitCharge) {
        let parts = charge.text.split(separator: " ", maxSplits: 1)
        let payload = "l \(parts[0]).\(instance) \(parts[1])"
        Task { [store] in try? await store.notify(payload) }
    }

    func stop() async {
        let running = tasks.withLock { $0 }
        // The loop and the listener first, the pool they use last; none may hold up the end of
        // the process (a connection stuck on a dead PostgreSQL may not heed cancellation).
        for task in running.dropFirst() { task.cancel() }
        for task in running.dropFirst() { await Self.awaitBriefly(task) }
        running.first?.cancel()
        if let pool = running.first { await Self.awaitBriefly(pool) }
    }

    private static func awaitBriefly(_ task: Task<Void, Never>, limit: Duration = .seconds(2)) async {
        let done = AsyncStream<Void>.makeStream()
        Task {
            await task.value
            done.continuation.yield()
        }
        Task {
            try? await Task.sleep(for: limit)
            done.continuation.yield()
        }
        var iterator = done.stream.makeAsyncIterator()
        _ = await iterator.next()
    }
}
