import Foundation
import Logging
import Synchronization
import TallyDomain
import TallyEventLog

/// Why a command did not go through: refused by the rules, or the log could not take it.
enum CommandFailure: Error {
    case refused(DomainError)
    case logUnavailable(any Error)
}

/// What a command did, as the session's single writer saw it.
struct Executed: Sendable {
    /// The logged events (not yet durable: await the last one's sequence before acknowledging).
    let events: [LoggedEvent]
    /// A vote that replaced the participant's earlier ballot on the poll (decided under the
    /// writer's lock, so of two racing first ballots exactly one is new).
    let replacedBallot: Bool

    /// The sequence to wait for before acknowledging: the last event's, or — for a command that
    /// changed nothing (a repeated upvote) — the session's latest, so the reply never gets ahead
    /// of the identical command that did change it.
    let sequence: UInt64

    /// The last event, for commands that always cause one (all but idempotent repeats).
    var last: LoggedEvent { events[events.count - 1] }
}

/// One session at run time: its state, and the single writer that changes it.
///
/// Every command on a session, its creation included, runs `decide → append to the log →
/// apply` inside one lock (`commit`, the only place that does), so commands are totally
/// ordered per session (the ADR's causal order) and the order of the log is the order of the
/// state. The lock is held only for in-memory work; durability is awaited outside it, which
/// lets concurrent commands share one commit.
final class LiveSession: Sendable {
    let id: SessionID
    let log: any EventLog
    /// How this session's decisions become history.
    let writer: SessionWriter
    private let limits: SessionLimits
    private let results: ResultsCoalescer
    private let countdowns: Countdowns
    private let inner: Mutex<Inner>
    /// Ballots accepted since the server started (the operator's console turns it into votes
    /// per second); replayed ballots are history, not load, and do not count.
    private let accepted = Atomic<Int>(0)

    private struct Inner {
        /// Nil until `session.created` is applied.
        var state: SessionState?
        /// Sequence of this session's latest event (0 before the first).
        var lastSequence: UInt64
    }

    /// A session that exists only once `create` (or replaying its `session.created`) succeeds.
    init(id: SessionID, writer: SessionWriter, limits: SessionLimits, results: ResultsCoalescer, countdowns: Countdowns) {
        self.id = id
        self.writer = writer
        self.log = writer.log
        self.limits = limits
        self.results = results
        self.countdowns = countdowns
        self.inner = Mutex(Inner(state: nil, lastSequence: 0))
    }

    /// A session restored from the database projection.
    init(
        state: SessionState, lastSequence: UInt64, writer: SessionWriter, limits: SessionLimits, results: ResultsCoalescer,
        countdowns: Countdowns
    ) {
        self.id = state.id
        self.writer = writer
        self.log = writer.log
        self.limits = limits
        self.results = results
        self.countdowns = countdowns
        self.inner = Mutex(Inner(state: state, lastSequence: lastSequence))
    }

    /// Recovery: fold an event read back from the log.
    func replay(_ logged: LoggedEvent) {
        inner.withLock {
            Self.fold(logged.event, into: &$0.state)
            $0.lastSequence = logged.sequence
        }
    }

    /// Creates the session: its first event, through the same writer as every later command.
    func create(title: String, joinCode: JoinCode, nicknames: NicknamePolicy?) throws(CommandFailure) -> Executed {
        try commit(Self.creating(id: id, title: title, joinCode: joinCode, nicknames: nicknames, limits: limits))
    }

    static func creating(id: SessionID, title: String, joinCode: JoinCode, nicknames: NicknamePolicy?, limits: SessionLimits) -> Decide {
        { state, _ throws(DomainError) in
            guard state == nil else { throw .conflict("session \(id) exists already") }
            return [
                .sessionCreated(try SessionState.create(id: id, title: title, joinCode: joinCode, nicknames: nicknames, limits: limits))
            ]
        }
    }

    /// Runs one command on the session (embedded: appended, not yet durable).
    func execute(_ command: SessionCommand) throws(CommandFailure) -> Executed {
        try commit(Self.deciding(command, id: id, limits: limits))
    }

    /// Runs one command and returns once its events are durable (embedded: after the ring's
    /// commit; in a cluster: after PostgreSQL's).
    func submit(_ command: SessionCommand) async throws(CommandFailure) -> Executed {
        let decide = Self.deciding(command, id: id, limits: limits)
        switch writer {
        case .embedded:
            let executed = try commit(decide)
            do {
                try await log.waitUntilDurable(executed.sequence)
            } catch {
                throw .logUnavailable(error)
            }
            return executed
        case .cluster(let cluster):
            return try await cluster.submit(self, decide: decide)
        }
    }

    /// A decision: the events a command causes on a session's state at `now` (pure).
    typealias Decide = @Sendable (SessionState?, Date) throws(DomainError) -> [SessionEvent]

    static func deciding(_ command: SessionCommand, id: SessionID, limits: SessionLimits) -> Decide {
        { state, now throws(DomainError) in
            guard let state else { throw .notFound("no session \(id)") }
            return try state.decide(command, limits: limits, now: now)
        }
    }

    /// What `decide` makes of `state` at `now`, and whether a ballot among the events replaced
    /// the participant's earlier one (the rule both writers share; `state` is not changed).
    static func decision(
        _ decide: Decide, on state: SessionState?, now: Date
    ) -> Result<(events: [SessionEvent], replaced: Bool), DomainError> {
        let events: [SessionEvent]
        do throws(DomainError) {
            events = try decide(state, now)
        } catch {
            return .failure(error)
        }
        // A ballot replaced the participant's earlier one — except an open poll's ballot that
        // grew by an answer, which added rather than replaced.
        let replaced = events.contains { event in
            guard case .ballotCast(let cast) = event, let previous = state?.ballot(of: cast.participantId, on: cast.pollId) else {
                return false
            }
            if case .answers(let now) = cast.ballot, case .answers(let before) = previous { return now.count <= before.count }
            return true
        }
        return .success((events, replaced))
    }

    /// The one place (embedded) a decision becomes history: decide, append to the ring, apply —
    /// all under the session's lock. The clock is read under it too, so times follow the log's
    /// order. (In a cluster the cluster writer does the same under PostgreSQL's lock.)
    private func commit(_ decide: Decide) throws(CommandFailure) -> Executed {
        guard case .embedded(let ring) = writer else {
            preconditionFailure("a cluster session is changed through its cluster writer")
        }
        let result: Result<Executed, CommandFailure> = inner.withLock { inner in
            let decided: (events: [SessionEvent], replaced: Bool)
            switch Self.decision(decide, on: inner.state, now: ServerClock.now()) {
            case .success(let made): decided = made
            case .failure(let refusal): return .failure(.refused(refusal))
            }
            guard !decided.events.isEmpty else {
                return .success(Executed(events: [], replacedBallot: false, sequence: inner.lastSequence))
            }
            let logged: [LoggedEvent]
            do {
                logged = try ring.append(sessionId: id, events: decided.events)
            } catch {
                return .failure(.logUnavailable(error))
            }
            for entry in logged { Self.fold(entry.event, into: &inner.state) }
            if let last = logged.last { inner.lastSequence = last.sequence }
            return .success(Executed(events: logged, replacedBallot: decided.replaced, sequence: inner.lastSequence))
        }
        let executed = try result.get()
        committed(executed)
        return executed
    }

    /// After a commit: count the ballots, have their results published, start countdowns.
    func committed(_ executed: Executed) {
        for entry in executed.events {
            switch entry.event {
            case .ballotCast(let ballot):
                accepted.add(1, ordering: .relaxed)
                results.changed(.results(ballot.pollId), in: self)
            case .questionUpvoted: results.changed(.upvotes, in: self)
            case .pollOpened(let opened): scheduleCountdown(opened)
            default: break
            }
        }
    }

    /// Publishes the current counts (a cluster's fallback when the instance that took the
    /// ballots did not).
    func republish(_ publication: ResultsCoalescer.Publication) {
        results.changed(publication, in: self)
    }

    /// A quiz question's countdown (every instance of a cluster arms it; the first to close wins).
    func scheduleCountdown(_ opened: SessionEvent.PollPayload) {
        if let closesAt = opened.poll.closesAt.flatMap(EventTime.parse) {
            countdowns.schedule(opened.poll.id, closesAt: closesAt, in: self)
        }
    }

    /// The cluster writer's view: the state and latest sequence to decide on (a copy: the
    /// writer decides on it and installs the result only once committed).
    func writerSnapshot() -> (state: SessionState?, lastSequence: UInt64) {
        inner.withLock { ($0.state, $0.lastSequence) }
    }

    /// The cluster writer installs what it committed.
    func install(state: SessionState?, lastSequence: UInt64) {
        inner.withLock { inner in
            inner.state = state
            inner.lastSequence = lastSequence
        }
    }

    /// Folds an event into a state (the cluster writer's working copies use it too).
    static func apply(_ event: SessionEvent, to state: inout SessionState?) { fold(event, into: &state) }

    /// `session.created` makes the state; every later event is applied to it.
    private static func fold(_ event: SessionEvent, into state: inout SessionState?) {
        if state != nil {
            state!.apply(event)
        } else if case .sessionCreated(let created) = event {
            state = SessionState(created: created)
        }
    }

    /// Ballots this session has accepted since the server started.
    var ballotsAccepted: Int { accepted.load(ordering: .relaxed) }

    /// The session's join code; nil until it is created.
    var joinCode: JoinCode? { inner.withLock { $0.state?.joinCode } }

    /// At start: the open quiz question's countdown, if the box stopped during one.
    func resumeCountdown() {
        let open = inner.withLock { inner in
            inner.state.flatMap { state in state.openPollId.flatMap { id in state.closesAt(id).map { (id, $0) } } }
        }
        if let (pollId, closesAt) = open { countdowns.schedule(pollId, closesAt: closesAt, in: self) }
    }

    /// Reads the state under the lock (consistent with `lastSequence`).
    func read<T>(_ body: (SessionState, UInt64) -> T) -> T {
        inner.withLock { inner in
            // The venue hands out only sessions that exist (see `Venue.add`).
            guard let state = inner.state else { preconditionFailure("session \(id) read before it was created") }
            return body(state, inner.lastSequence)
        }
    }
}

/// How sessions' decisions become history.
enum SessionWriter: Sendable {
    /// One box: each session appends to the ring inside its own lock; durability follows.
    case embedded(any AppendingEventLog)
    /// A cluster: the instance's cluster writer decides and appends under PostgreSQL's lock and
    /// answers once committed.
    case cluster(ClusterWriter)

    var log: any EventLog {
        switch self {
        case .embedded(let ring): ring
        case .cluster(let cluster): cluster.log
        }
    }
}

/// All sessions on this appliance, and the join-code directory.
final class Venue: Sendable {
    let writer: SessionWriter
    let log: any EventLog
    let limits: SessionLimits
    let maxSessions: Int
    /// Publishes `poll.results` after ballots (a service of the application).
    let results: ResultsCoalescer
    /// Closes quiz questions on time (a service of the application).
    let countdowns = Countdowns()
    private let directory: Mutex<Directory>
    private let activeCount = Mutex<(count: Int, at: ContinuousClock.Instant?)>((0, nil))

    private struct Directory {
        var sessions: [SessionID: LiveSession] = [:]
        /// Every join code ever issued, so a stale code never lands in a newer session.
        var joinCodes: [JoinCode: SessionID] = [:]
        var order: [SessionID] = []
    }

    init(writer: SessionWriter, limits: SessionLimits, maxSessions: Int, resultsInterval: Duration) {
        self.writer = writer
        self.log = writer.log
        self.limits = limits
        self.maxSessions = maxSessions
        self.results = ResultsCoalescer(interval: resultsInterval, log: writer.log)
        self.directory = Mutex(Directory())
    }

    /// Restores the sessions the database projection holds.
    func restore(_ sessions: [SQLiteProjection.RestoredSession]) {
        directory.withLock { directory in
            for restored in sessions {
                add(
                    LiveSession(
                        state: restored.state, lastSequence: restored.lastSequence, writer: writer, limits: limits, results: results,
                        countdowns: countdowns),
                    to: &directory)
            }
        }
    }

    /// Folds events the projection does not hold yet (the ring's tail) into the sessions.
    func recover(from events: [LoggedEvent]) {
        directory.withLock { directory in
            for logged in events {
                if case .sessionCreated = logged.event {
                    let session = LiveSession(
                        id: logged.sessionId, writer: writer, limits: limits, results: results, countdowns: countdowns)
                    session.replay(logged)
                    add(session, to: &directory)
                } else if let session = directory.sessions[logged.sessionId] {
                    session.replay(logged)
                }
            }
        }
    }

    /// Creates a session with a fresh id and join code; returns once its creation is durable.
    func createSession(title: String, nicknames: NicknamePolicy? = nil) async throws(CommandFailure) -> (LiveSession, Executed) {
        switch writer {
        case .embedded:
            let (session, executed) = try createEmbedded(title: title, nicknames: nicknames)
            do {
                try await log.waitUntilDurable(executed.sequence)
            } catch {
                throw .logUnavailable(error)
            }
            return (session, executed)
        case .cluster(let cluster):
            var rng = SystemRandomNumberGenerator()
            let id = IdentifierAlphabet.make(length: 10, using: &rng)
            let code = JoinCode.random(using: &rng)
            let session = LiveSession(id: id, writer: writer, limits: limits, results: results, countdowns: countdowns)
            let create = LiveSession.creating(id: id, title: title, joinCode: code, nicknames: nicknames, limits: limits)
            // Decided under the cluster's lock, after this instance has folded every committed
            // event: the directory then knows every session of the cluster.
            let executed = try await cluster.submit(session, creating: true) { [self] state, now throws(DomainError) in
                guard sessionCount < maxSessions else { throw .limitReached("this cluster holds at most \(maxSessions) sessions") }
                guard self.session(id) == nil, self.session(joinCode: code) == nil else {
                    throw .conflict("that session id or join code was just taken; try again")
                }
                return try create(state, now)
            }
            return (session, executed)
        }
    }

    /// One box: the directory lock is held throughout, so the id and code stay unique and the
    /// session count within the limit.
    private func createEmbedded(title: String, nicknames: NicknamePolicy?) throws(CommandFailure) -> (LiveSession, Executed) {
        var rng = SystemRandomNumberGenerator()
        let result: Result<(LiveSession, Executed), CommandFailure> = directory.withLock { directory in
            guard directory.sessions.count < maxSessions else {
                return .failure(.refused(.limitReached("this appliance holds at most \(maxSessions) sessions")))
            }
            var id = IdentifierAlphabet.make(length: 10, using: &rng)
            while directory.sessions[id] != nil { id = IdentifierAlphabet.make(length: 10, using: &rng) }
            var code = JoinCode.random(using: &rng)
            while directory.joinCodes[code] != nil { code = JoinCode.random(using: &rng) }
            let session = LiveSession(id: id, writer: writer, limits: limits, results: results, countdowns: countdowns)
            do throws(CommandFailure) {
                let executed = try session.create(title: title, joinCode: code, nicknames: nicknames)
                add(session, to: &directory)
                return .success((session, executed))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The cluster writer registers a session it has just created (once committed).
    func addCreated(_ session: LiveSession) {
        directory.withLock { add(session, to: &$0) }
    }

    /// Registers a created session and its join code (caller holds the directory lock).
    private func add(_ session: LiveSession, to directory: inout Directory) {
        // Only sessions that exist are ever handed out (`LiveSession.read` relies on it).
        guard let joinCode = session.joinCode else { return }
        directory.sessions[session.id] = session
        directory.joinCodes[joinCode] = session.id
        directory.order.append(session.id)
    }

    /// At start, once restored and recovered: quiz questions that were counting down when the
    /// box stopped close at their time (at once if it has passed).
    func resumeCountdowns() {
        for session in allSessions() { session.resumeCountdown() }
    }

    /// When the most recent quiz question of any session opened (for `ServerClock.start`).
    var newestQuizOpening: Date? {
        allSessions().compactMap { $0.read { state, _ in state.newestQuizOpening } }.max()
            .map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    /// In a cluster: folds whatever other instances have committed so far (a session created a
    /// moment ago on another instance is then known here). Nothing on one box.
    func catchUp() async {
        if case .cluster(let cluster) = writer { await cluster.catchUpToHead() }
    }

    /// The session, also when another instance of a cluster created it a moment ago.
    func findSession(_ id: SessionID) async -> LiveSession? {
        if let session = session(id) { return session }
        await catchUp()
        if let session = session(id) { return session }
        // The first read may have been one already under way when this request came in.
        await catchUp()
        return session(id)
    }

    func session(_ id: SessionID) -> LiveSession? {
        directory.withLock { $0.sessions[id] }
    }

    func session(joinCode: JoinCode) -> LiveSession? {
        directory.withLock { d in d.joinCodes[joinCode].flatMap { d.sessions[$0] } }
    }

    /// Sessions in creation order.
    func allSessions() -> [LiveSession] {
        directory.withLock { d in d.order.compactMap { d.sessions[$0] } }
    }

    var sessionCount: Int { directory.withLock { $0.sessions.count } }

    /// Sessions not yet ended, counted at most once a second (it sizes the wrong-code budget,
    /// which a flood of guesses consults on every request).
    var activeSessionCount: Int {
        let now = ContinuousClock.now
        if let cached = activeCount.withLock({ c in c.at.map { $0.duration(to: now) < .seconds(1) } == true ? c.count : nil }) {
            return cached
        }
        let count = allSessions().reduce(0) { $0 + ($1.read { state, _ in state.lifecycle == .active } ? 1 : 0) }
        activeCount.withLock { $0 = (count, now) }
        return count
    }

    /// The current generation of a session's presenter or display link (0 for an unknown one).
    func linkGeneration(_ id: SessionID, _ link: SessionLink) -> Int {
        session(id)?.read { state, _ in state.linkGeneration(link) } ?? 0
    }
}
