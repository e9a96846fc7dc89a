import Dispatch
import Foundation
import GRDB
import Logging
import Synchronization
import TallyDomain

/// The event log in SQLite (WAL mode) with group commit.
///
/// Appends only take a lock and queue the event; one writer queue drains everything queued
/// into a single transaction, so N concurrent commands cost one commit (one fsync with
/// `.fsync`). The same database holds a small key/value table of appliance settings.
public final class SQLiteEventLog: EventLog, SettingsStore {
    public let epoch: String
    private let pool: DatabasePool
    private let writer = DispatchQueue(label: "tally.eventlog.writer")
    private let logger: Logger
    private let state: Mutex<State>

    private struct State: ~Copyable {
        var nextSequence: UInt64
        var durableSequence: UInt64
        var pending: [LoggedEvent] = []
        var flushScheduled = false
        var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var observer: (@Sendable ([LoggedEvent]) -> Void)?
        var failure: (any Error)?
    }

    /// Opens (or creates) the log at `path`.
    public init(path: String, durability: Durability, logger: Logger) throws {
        var config = Configuration()
        config.label = "tally"
        config.prepareDatabase { db in
            // WAL: readers (replay, snapshots) never block the writer. FULL syncs the WAL on
            // every commit, so an acknowledged command survives a power cut; NORMAL only
            // survives a crash of the process.
            try db.execute(sql: "PRAGMA synchronous = \(durability == .fsync ? "FULL" : "NORMAL")")
        }
        self.pool = try DatabasePool(path: path, configuration: config)
        self.logger = logger
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events (
                    seq INTEGER PRIMARY KEY,
                    session_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    at_ms INTEGER NOT NULL,
                    data BLOB NOT NULL
                );
                CREATE INDEX events_by_session ON events(session_id, seq);
                CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
        }
        try migrator.migrate(pool)
        let (epoch, last) = try pool.write { db -> (String, UInt64) in
            let existing = try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = 'epoch'")
            let epoch: String
            if let existing {
                epoch = existing
            } else {
                var rng = SystemRandomNumberGenerator()
                epoch = String(format: "%08x", UInt32.random(in: .min ... .max, using: &rng))
                try db.execute(sql: "INSERT INTO settings(key, value) VALUES ('epoch', ?)", arguments: [epoch])
            }
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
            return (epoch, UInt64(last))
        }
        self.epoch = epoch
        self.state = Mutex(State(nextSequence: last + 1, durableSequence: last))
    }

    public var durableSequence: UInt64 { state.withLock { $0.durableSequence } }
    public var failure: (any Error)? { state.withLock { $0.failure } }

    public func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void) {
        state.withLock { $0.observer = observer }
    }

    public func append(sessionId: SessionID, events: [SessionEvent]) throws -> [LoggedEvent] {
        let now = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        let (logged, schedule) = try state.withLock { state -> ([LoggedEvent], Bool) in
            if let failure = state.failure { throw failure }
            var logged: [LoggedEvent] = []
            logged.reserveCapacity(events.count)
            for event in events {
                logged.append(LoggedEvent(sequence: state.nextSequence, sessionId: sessionId, timestamp: now, event: event))
                state.nextSequence += 1
            }
            state.pending += logged
            let schedule = !state.flushScheduled
            state.flushScheduled = true
            return (logged, schedule)
        }
        if schedule { writer.async { self.flush() } }
        return logged
    }

    public func waitUntilDurable(_ sequence: UInt64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome: Result<Void, any Error>? = state.withLock { state in
                if let failure = state.failure { return .failure(failure) }
                if sequence <= state.durableSequence { return .success(()) }
                state.waiters.append((sequence, continuation))
                return nil
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }

    /// Runs on the writer queue only: writes everything queued in one transaction.
    private func flush() {
        let batch = state.withLock { state -> [LoggedEvent] in
            let batch = state.pending
            state.pending = []
            state.flushScheduled = false
            return batch
        }
        guard !batch.isEmpty else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try pool.write { db in
                let statement = try db.cachedStatement(
                    sql: "INSERT INTO events(seq, session_id, type, at_ms, data) VALUES (?, ?, ?, ?, ?)")
                for record in batch {
                    let data = try encoder.encode(record.event.storedPayload)
                    try statement.execute(arguments: [
                        Int64(record.sequence), record.sessionId, record.event.type,
                        Int64(record.timestamp.timeIntervalSince1970 * 1000), data,
                    ])
                }
            }
        } catch {
            logger.critical("event log write failed; refusing further commands until restart", metadata: ["error": "\(error)"])
            let failure = EventLogError.writeFailed("\(error)")
            let waiters = state.withLock { state in
                state.failure = failure
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.continuation.resume(throwing: failure) }
            return
        }
        let last = batch[batch.count - 1].sequence
        let (ready, observer) = state.withLock { state in
            state.durableSequence = last
            var ready: [CheckedContinuation<Void, any Error>] = []
            state.waiters.removeAll { waiter in
                guard waiter.sequence <= last else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return (ready, state.observer)
        }
        // Broadcast before acknowledging: by the time a voter sees 2xx, displays are being told.
        observer?(batch)
        for continuation in ready { continuation.resume() }
    }

    public func events(of sessionId: SessionID, after: UInt64, through: UInt64) throws -> [LoggedEvent] {
        guard through > after else { return [] }
        return try pool.read { db in
            try Self.decodeRows(
                db, sql: "SELECT seq, session_id, type, at_ms, data FROM events WHERE session_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                arguments: [sessionId, Int64(after), Int64(clamping: through)])
        }
    }

    public func allEvents() throws -> [LoggedEvent] {
        try pool.read { db in
            try Self.decodeRows(db, sql: "SELECT seq, session_id, type, at_ms, data FROM events ORDER BY seq", arguments: [])
        }
    }

    private static func decodeRows(_ db: Database, sql: String, arguments: StatementArguments) throws -> [LoggedEvent] {
        var result: [LoggedEvent] = []
        let decoder = JSONDecoder()
        let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
        while let row = try rows.next() {
            let sequence = UInt64(row[0] as Int64)
            let type: String = row[2]
            let data: Data = row[4]
            do {
                let event = try SessionEvent.decode(type: type, using: JSONPayload(data: data, decoder: decoder))
                result.append(LoggedEvent(
                    sequence: sequence, sessionId: row[1],
                    timestamp: Date(timeIntervalSince1970: Double(row[3] as Int64) / 1000), event: event))
            } catch {
                throw EventLogError.corruptRecord(sequence: sequence, reason: "\(error)")
            }
        }
        return result
    }

    // MARK: settings

    public func setting(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, to value: String) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", arguments: [key, value])
        }
    }

    /// Whether the database answers a trivial read (for `/readyz`).
    public func isReadable() -> Bool {
        (try? pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }
}

/// Small persistent settings (the appliance secret, the operator password hash).
public protocol SettingsStore: Sendable {
    func setting(_ key: String) throws -> String?
    func setSetting(_ key: String, to value: String) throws
}

private struct JSONPayload: PayloadDecoder {
    let data: Data
    let decoder: JSONDecoder
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self, from: data) }
}
