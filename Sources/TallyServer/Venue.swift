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

/// One session at run time: its state, and the single writer that changes it.
///
/// Every command on a session runs `decide → append to the log → apply` inside one lock, so
/// commands are totally ordered per session (the ADR's causal order) and the order of the log
/// is the order of the state. The lock is held only for in-memory work; durability is awaited
/// outside it, which lets concurrent commands share one commit.
final class LiveSession: Sendable {
    let id: SessionID
    private let log: any EventLog
    private let limits: SessionLimits
    private let inner: Mutex<Inner>
    /// Minimum time between two `poll.results` of one poll (coalescing bursts of votes).
    private let resultsInterval: Duration

    private struct Inner {
        var state: SessionState
        /// Sequence of this session's latest event (0 before the first).
        var lastSequence: UInt64
        var results: [PollID: ResultsSchedule] = [:]
    }

    private struct ResultsSchedule {
        var scheduled = false
        var lastPublished: ContinuousClock.Instant?
    }

    init(state: SessionState, lastSequence: UInt64, log: any EventLog, limits: SessionLimits, resultsInterval: Duration) {
        self.id = state.id
        self.log = log
        self.limits = limits
        self.resultsInterval = resultsInterval
        self.inner = Mutex(Inner(state: state, lastSequence: lastSequence))
    }

    /// Recovery: fold an event read back from the log.
    func replay(_ logged: LoggedEvent) {
        inner.withLock {
            $0.state.apply(logged.event)
            $0.lastSequence = logged.sequence
        }
    }

    /// Runs one command. Returns the logged events (not yet durable: await the last one's
    /// sequence before acknowledging).
    func execute(_ command: SessionCommand) throws(CommandFailure) -> [LoggedEvent] {
        let result: Result<[LoggedEvent], CommandFailure> = inner.withLock { inner in
            let events: [SessionEvent]
            do throws(DomainError) {
                events = try inner.state.decide(command, limits: limits)
            } catch {
                return .failure(.refused(error))
            }
            let logged: [LoggedEvent]
            do {
                logged = try log.append(sessionId: id, events: events)
            } catch {
                return .failure(.logUnavailable(error))
            }
            for entry in logged { inner.state.apply(entry.event) }
            if let last = logged.last { inner.lastSequence = last.sequence }
            return .success(logged)
        }
        let logged = try result.get()
        for entry in logged {
            if case .ballotCast(let ballot) = entry.event { scheduleResults(for: ballot.pollId) }
        }
        return logged
    }

    /// Reads the state under the lock (consistent with `lastSequence`).
    func read<T>(_ body: (SessionState, UInt64) -> T) -> T {
        inner.withLock { body($0.state, $0.lastSequence) }
    }

    /// Coalesces a burst of ballots into `poll.results` at most every `resultsInterval` per
    /// poll, and always at least one after the last ballot: a ballot arriving while a publish
    /// is pending is included in it; one arriving after schedules the next.
    private func scheduleResults(for pollId: PollID) {
        let now = ContinuousClock.now
        let delay: Duration? = inner.withLock { inner in
            var schedule = inner.results[pollId] ?? ResultsSchedule()
            guard !schedule.scheduled else { return nil }
            schedule.scheduled = true
            inner.results[pollId] = schedule
            guard let last = schedule.lastPublished else { return .zero }
            let due = last.advanced(by: resultsInterval)
            return due > now ? now.duration(to: due) : .zero
        }
        guard let delay else { return }
        Task {
            if delay > .zero { try? await Task.sleep(for: delay) }
            self.publishResults(for: pollId)
        }
    }

    private func publishResults(for pollId: PollID) {
        inner.withLock { inner in
            inner.results[pollId] = ResultsSchedule(scheduled: false, lastPublished: .now)
        }
        // A failure here (log stopped) is already reported by the log; results are derived
        // data and the next ballot schedules another publish.
        _ = try? execute(.publishResults(pollId))
    }
}

/// All sessions on this appliance, and the join-code directory.
final class Venue: Sendable {
    let log: any EventLog
    let limits: SessionLimits
    let maxSessions: Int
    private let resultsInterval: Duration
    private let directory: Mutex<Directory>
    private let activeCount = Mutex<(count: Int, at: ContinuousClock.Instant?)>((0, nil))

    private struct Directory {
        var sessions: [SessionID: LiveSession] = [:]
        /// Every join code ever issued, so a stale code never lands in a newer session.
        var joinCodes: [JoinCode: SessionID] = [:]
        var order: [SessionID] = []
    }

    init(log: any EventLog, limits: SessionLimits, maxSessions: Int, resultsInterval: Duration) {
        self.log = log
        self.limits = limits
        self.maxSessions = maxSessions
        self.resultsInterval = resultsInterval
        self.directory = Mutex(Directory())
    }

    /// Restores the sessions the database projection holds.
    func restore(_ sessions: [SQLiteProjection.RestoredSession]) {
        directory.withLock { directory in
            for restored in sessions {
                add(restored.state, lastSequence: restored.lastSequence, to: &directory)
            }
        }
    }

    /// Folds events the projection does not hold yet (the ring's tail) into the sessions.
    func recover(from events: [LoggedEvent]) {
        directory.withLock { directory in
            for logged in events {
                if case .sessionCreated(let created) = logged.event {
                    add(SessionState(created: created), lastSequence: logged.sequence, to: &directory)
                } else if let session = directory.sessions[logged.sessionId] {
                    session.replay(logged)
                }
            }
        }
    }

    /// Creates a session with a fresh id and join code.
    func createSession(title: String) throws(CommandFailure) -> (LiveSession, LoggedEvent) {
        var rng = SystemRandomNumberGenerator()
        let result: Result<(LiveSession, LoggedEvent), CommandFailure> = directory.withLock { directory in
            guard directory.sessions.count < maxSessions else {
                return .failure(.refused(.limitReached("this appliance holds at most \(maxSessions) sessions")))
            }
            var id = IdentifierAlphabet.make(length: 10, using: &rng)
            while directory.sessions[id] != nil { id = IdentifierAlphabet.make(length: 10, using: &rng) }
            var code = JoinCode.random(using: &rng)
            while directory.joinCodes[code] != nil { code = JoinCode.random(using: &rng) }
            let created: SessionEvent.SessionCreated
            do throws(DomainError) {
                created = try SessionState.create(id: id, title: title, joinCode: code, limits: limits)
            } catch {
                return .failure(.refused(error))
            }
            let logged: LoggedEvent
            do {
                logged = try log.append(sessionId: id, events: [.sessionCreated(created)])[0]
            } catch {
                return .failure(.logUnavailable(error))
            }
            let session = add(SessionState(created: created), lastSequence: logged.sequence, to: &directory)
            return .success((session, logged))
        }
        return try result.get()
    }

    /// Registers a session and its join code (caller holds the directory lock).
    @discardableResult
    private func add(_ state: SessionState, lastSequence: UInt64, to directory: inout Directory) -> LiveSession {
        let session = LiveSession(
            state: state, lastSequence: lastSequence, log: log, limits: limits, resultsInterval: resultsInterval)
        directory.sessions[state.id] = session
        directory.joinCodes[state.joinCode] = state.id
        directory.order.append(state.id)
        return session
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
