import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization
import TallyDomain
import TallyEventLog

/// The cluster's PostgreSQL: the event log every instance appends to, the settings they share,
/// and the notifications that tell them something changed. SQL only: what to append is decided
/// by the server, under the log's lock that `appendUnderLock` holds for it.
///
/// Tables (made by `prepare`, the first instance to start; later ones find them):
/// - `tally_log_head (id = 1, seq)`: the newest sequence. Every append locks this one row
///   (`SELECT … FOR UPDATE`) until its transaction commits, so appends are serial across the
///   cluster, sequences are gap-free and in commit order, and whoever holds the lock decides on
///   a state that includes every committed event — PostgreSQL, not an instance, is the single
///   writer.
/// - `tally_events (seq, session_id, session_seq, at_ms, type, payload)`: the facts, as the
///   embedded ring stores them (`type` + JSON payload). `(session_id, session_seq)` is unique:
///   even a writer that skipped the lock could not give a session two events at one position.
/// - `tally_settings (key, value)`: the appliance secret, the operator key and password hash,
///   the sign-in epoch — what `SettingsStore` holds on one box.
public final class ClusterStore: Sendable {
    public let address: StoreAddress
    let client: PostgresClient
    let logger: Logger
    /// How long one round trip may take before the store counts as unreachable.
    public let timeout: Duration
    /// The one notification channel: `e <from> <to>` (events committed), `s <key>` (a setting
    /// changed), `l <kind> <address>` (a rate-limit charge other instances must also count).
    public static let channel = "tally"
    /// The layout of the tables; a newer one (written by a newer Tally) is refused.
    public static let format = 1

    public init(address: StoreAddress, logger: Logger, timeout: Duration = .seconds(5)) {
        self.address = address
        self.logger = logger
        self.timeout = timeout
        var configuration = PostgresClient.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: Self.tls(address.tls))
        configuration.options.connectTimeout = .seconds(3)
        configuration.options.maximumConnections = 8
        configuration.options.minimumConnections = 1
        configuration.options.keepAliveBehavior = .init(frequency: .seconds(10))
        configuration.options.additionalStartupParameters = Self.sessionLimits
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// Limits PostgreSQL enforces on each of an instance's connections, whatever the instance
    /// does: a frozen or partitioned instance holding the log's lock in an open transaction is
    /// cut off after 10 s (not after TCP's keepalive, hours later), and no statement runs for
    /// more than a minute.
    static let sessionLimits: [(String, String)] = [
        ("idle_in_transaction_session_timeout", "10000"), ("statement_timeout", "60000"),
        ("application_name", "tally"),
    ]

    static func tls(_ mode: StoreAddress.TLSMode) -> PostgresClient.Configuration.TLS {
        switch mode {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    /// Runs the connection pool until cancelled (a task of the server's).
    public func run() async {
        await client.run()
    }

    // MARK: - Schema

    /// Makes the tables if they are missing, refuses a newer layout, and returns the cluster's
    /// epoch (made once, by the first instance): part of every event id, the same everywhere.
    public func prepare() async throws -> String {
        try await bounded("preparing the database") { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                // Two instances starting together: one makes the tables, the other waits here.
                try await connection.query("SELECT pg_advisory_xact_lock(7213001)", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS tally_settings (key text PRIMARY KEY, value text NOT NULL)
                    """, logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS tally_log_head (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL)
                    """, logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS tally_events (
                        seq bigint PRIMARY KEY,
                        session_id text NOT NULL,
                        session_seq integer NOT NULL,
                        at_ms bigint NOT NULL,
                        type text NOT NULL,
                        payload text NOT NULL,
                        UNIQUE (session_id, session_seq))
                    """, logger: logger)
                try await connection.query(
                    "CREATE INDEX IF NOT EXISTS tally_events_by_session ON tally_events (session_id, seq)", logger: logger)
                try await connection.query("INSERT INTO tally_log_head VALUES (1, 0) ON CONFLICT DO NOTHING", logger: logger)
                let format = "\(Self.format)"
                try await connection.query(
                    "INSERT INTO tally_settings VALUES ('cluster_format', \(format)) ON CONFLICT DO NOTHING", logger: logger)
                let epoch = Self.randomHex(8)
                try await connection.query(
                    "INSERT INTO tally_settings VALUES ('cluster_epoch', \(epoch)) ON CONFLICT DO NOTHING", logger: logger)
                // The secrets every instance signs and checks with: made once, here, so two
                // instances starting together cannot each make their own.
                for key in ["secret", "operator_key"] {
                    let value = Self.randomHex(32)
                    try await connection.query(
                        "INSERT INTO tally_settings VALUES (\(key), \(value)) ON CONFLICT DO NOTHING", logger: logger)
                }
                let id = Self.randomIdentifier()
                try await connection.query(
                    "INSERT INTO tally_settings VALUES ('appliance_id', \(id)) ON CONFLICT DO NOTHING", logger: logger)
                var stored: [String: String] = [:]
                for try await (key, value) in try await connection.query(
                    "SELECT key, value FROM tally_settings WHERE key IN ('cluster_format', 'cluster_epoch')", logger: logger
                ).decode((String, String).self) {
                    stored[key] = value
                }
                if let found = stored["cluster_format"].flatMap(Int.init), found > Self.format {
                    throw NewerClusterFormat(address: self.address.description, found: found, known: Self.format)
                }
                guard let epoch = stored["cluster_epoch"] else { throw ClusterStoreError("the cluster epoch is missing") }
                return epoch
            }
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &rng)) }.joined()
    }

    static func randomIdentifier() -> String {
        var rng = SystemRandomNumberGenerator()
        return IdentifierAlphabet.make(length: 16, using: &rng)
    }

    // MARK: - The log

    /// An event as the table stores it.
    public struct Row: Sendable {
        public let logged: LoggedEvent
        public let sessionSequence: Int32

        public init(logged: LoggedEvent, sessionSequence: Int32) {
            self.logged = logged
            self.sessionSequence = sessionSequence
        }
    }

    /// Inside `appendUnderLock`: what the lock holder may read and write.
    public struct Transaction: Sendable {
        let connection: PostgresConnection
        let logger: Logger
        /// The newest committed sequence when the lock was taken.
        public let head: UInt64

        /// Committed events after `sequence` (those this instance has not folded yet).
        public func events(after sequence: UInt64) async throws -> [Row] {
            try await ClusterStore.rows(
                connection.query(
                    """
                    SELECT seq, session_id, session_seq, at_ms, type, payload FROM tally_events
                    WHERE seq > \(Int64(sequence)) ORDER BY seq
                    """, logger: logger))
        }
    }

    /// Takes the log's lock, hands `decide` the newest sequence, writes what it returns
    /// (sequences head + 1, …, in order), moves the head and notifies every instance — in one
    /// transaction. Returns once committed (PostgreSQL's `synchronous_commit` decides what that
    /// means; its default waits for the WAL flush).
    public func appendUnderLock(
        within limit: Duration? = nil, _ decide: @escaping @Sendable (Transaction) async throws -> [Row]
    ) async throws -> [Row] {
        let lockWait = "\(Int(((limit ?? timeout) * 4 / 5).components.seconds * 1000))ms"
        return try await bounded("appending events", within: limit) { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                // Give up on the lock before the caller gives up on us: the transaction then ends
                // here, instead of queueing on the lock after nobody waits for it.
                try await connection.query(
                    "SELECT set_config('lock_timeout', \(lockWait), true), set_config('statement_timeout', \(lockWait), true)",
                    logger: logger)
                let head = try await Self.single(
                    connection.query("SELECT seq FROM tally_log_head WHERE id = 1 FOR UPDATE", logger: logger), Int64.self)
                let rows = try await decide(Transaction(connection: connection, logger: logger, head: UInt64(head ?? 0)))
                guard let first = rows.first, let last = rows.last else { return rows }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                var seqs: [Int64] = []
                var sessions: [String] = []
                var sessionSeqs: [Int32] = []
                var times: [Int64] = []
                var types: [String] = []
                var payloads: [String] = []
                for row in rows {
                    seqs.append(Int64(row.logged.sequence))
                    sessions.append(row.logged.sessionId)
                    sessionSeqs.append(row.sessionSequence)
                    times.append(Int64((row.logged.timestamp.timeIntervalSince1970 * 1000).rounded()))
                    types.append(row.logged.event.type)
                    payloads.append(String(decoding: try encoder.encode(row.logged.event.storedPayload), as: UTF8.self))
                }
                try await connection.query(
                    """
                    INSERT INTO tally_events (seq, session_id, session_seq, at_ms, type, payload)
                    SELECT * FROM unnest(\(seqs)::bigint[], \(sessions)::text[], \(sessionSeqs)::integer[], \(times)::bigint[],
                        \(types)::text[], \(payloads)::text[])
                    """, logger: logger)
                let newHead = Int64(last.logged.sequence)
                try await connection.query("UPDATE tally_log_head SET seq = \(newHead) WHERE id = 1", logger: logger)
                let note = "e \(first.logged.sequence) \(last.logged.sequence)"
                try await connection.query("SELECT pg_notify(\(Self.channel), \(note))", logger: logger)
                return rows
            }
        }
    }

    /// Committed events after `sequence`, at most `limit` (catching up outside the lock: the
    /// head's lock is held through each commit, so what is visible is always a gap-free prefix).
    public func events(after sequence: UInt64, limit: Int = 5_000) async throws -> [Row] {
        try await bounded("reading events") { [client, logger] in
            try await Self.rows(
                client.query(
                    """
                    SELECT seq, session_id, session_seq, at_ms, type, payload FROM tally_events
                    WHERE seq > \(Int64(sequence)) ORDER BY seq LIMIT \(limit)
                    """, logger: logger))
        }
    }

    /// Every event, in order (an instance's start: the state is the fold of the log).
    public func allEvents(_ each: (Row) throws -> Void) async throws {
        var after: UInt64 = 0
        while true {
            let batch = try await events(after: after, limit: 20_000)
            for row in batch { try each(row) }
            guard let last = batch.last else { return }
            after = last.logged.sequence
        }
    }

    /// One session's events in (after, through], oldest first; nil when more than `limit`.
    public func events(of sessionId: SessionID, after: UInt64, through: UInt64, limit: Int) async throws -> [LoggedEvent]? {
        let rows = try await bounded("reading a session's events") { [client, logger] in
            try await Self.rows(
                client.query(
                    """
                    SELECT seq, session_id, session_seq, at_ms, type, payload FROM tally_events
                    WHERE session_id = \(sessionId) AND seq > \(Int64(after)) AND seq <= \(Int64(through))
                    ORDER BY seq LIMIT \(limit + 1)
                    """, logger: logger))
        }
        return rows.count > limit ? nil : rows.map(\.logged)
    }

    /// The newest committed sequence (also the store's health probe).
    public func head() async throws -> UInt64 {
        try await bounded("reading the log head") { [client, logger] in
            UInt64(try await Self.single(client.query("SELECT seq FROM tally_log_head WHERE id = 1", logger: logger), Int64.self) ?? 0)
        }
    }

    /// The oldest event and how many are kept (for `/readyz`).
    public func oldest() async throws -> (sequence: UInt64, at: Date)? {
        try await bounded("reading the oldest event") { [client, logger] in
            for try await (seq, at) in try await client.query(
                "SELECT seq, at_ms FROM tally_events ORDER BY seq LIMIT 1", logger: logger
            ).decode((Int64, Int64).self) {
                return (UInt64(seq), Date(timeIntervalSince1970: Double(at) / 1000))
            }
            return nil
        }
    }

    static func rows(_ sequence: PostgresRowSequence) async throws -> [Row] {
        let decoder = JSONDecoder()
        var rows: [Row] = []
        for try await (seq, session, sessionSeq, at, type, payload) in sequence.decode((Int64, String, Int32, Int64, String, String).self) {
            do {
                let event = try SessionEvent.decode(type: type, using: JSONPayload(text: payload, decoder: decoder))
                rows.append(
                    Row(
                        logged: LoggedEvent(
                            sequence: UInt64(seq), sessionId: session, timestamp: Date(timeIntervalSince1970: Double(at) / 1000),
                            event: event),
                        sessionSequence: sessionSeq))
            } catch {
                throw EventLogError.corruptRecord(sequence: UInt64(seq), reason: "\(error)")
            }
        }
        return rows
    }

    static func single<T: PostgresDecodable & Sendable>(_ sequence: PostgresRowSequence, _ type: T.Type) async throws -> T? {
        for try await value in sequence.decode(T.self) { return value }
        return nil
    }

    // MARK: - Settings

    public func settings() async throws -> [String: String] {
        try await bounded("reading settings") { [client, logger] in
            var settings: [String: String] = [:]
            for try await (key, value) in try await client.query("SELECT key, value FROM tally_settings", logger: logger).decode(
                (String, String).self)
            {
                settings[key] = value
            }
            return settings
        }
    }

    /// Writes a setting and tells every instance.
    public func setSetting(_ key: String, to value: String?) async throws {
        try await bounded("writing a setting") { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                if let value {
                    try await connection.query(
                        "INSERT INTO tally_settings VALUES (\(key), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        logger: logger)
                } else {
                    try await connection.query("DELETE FROM tally_settings WHERE key = \(key)", logger: logger)
                }
                let note = "s \(key)"
                try await connection.query("SELECT pg_notify(\(Self.channel), \(note))", logger: logger)
            }
        }
    }

    /// Changes a setting from its current value in one transaction (the row locked), so two
    /// instances changing it at once both count (a sign-out each, an epoch bumped twice).
    public func updateSetting(_ key: String, _ transform: @escaping @Sendable (String?) -> String) async throws -> String {
        try await bounded("updating a setting") { [client, logger] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("INSERT INTO tally_settings VALUES (\(key), '') ON CONFLICT DO NOTHING", logger: logger)
                let current = try await Self.single(
                    connection.query("SELECT value FROM tally_settings WHERE key = \(key) FOR UPDATE", logger: logger), String.self)
                let value = transform(current.flatMap { $0.isEmpty ? nil : $0 })
                try await connection.query("UPDATE tally_settings SET value = \(value) WHERE key = \(key)", logger: logger)
                let note = "s \(key)"
                try await connection.query("SELECT pg_notify(\(Self.channel), \(note))", logger: logger)
                return value
            }
        }
    }

    /// Tells every instance something that is not stored (a rate-limit charge).
    public func notify(_ payload: String) async throws {
        _ = try await bounded("notifying") { [client, logger] in
            try await client.query("SELECT pg_notify(\(Self.channel), \(payload))", logger: logger)
        }
    }

    // MARK: - Listening

    /// Listens on the channel until cancelled, reconnecting with backoff. `connected` is called
    /// after each (re)connection, before the first notification it may have missed would be
    /// noticed — the caller catches up from the table then.
    public func listen(
        connected: @Sendable () async -> Void, disconnected: @Sendable (String) -> Void, notified: @Sendable (String) -> Void
    ) async {
        var delay = Duration.milliseconds(200)
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try connectionConfiguration(), id: attempt, logger: logger)
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: Self.channel) { notifications in
                    delay = .milliseconds(200)
                    await connected()
                    for try await notification in notifications { notified(notification.payload) }
                }
            } catch {
                if Task.isCancelled { return }
                disconnected(Self.describe(error))
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(3))
        }
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS =
            switch address.tls {
            case .disable: .disable
            case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        var configuration = PostgresConnection.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: tls)
        configuration.options.connectTimeout = .seconds(3)
        configuration.options.additionalStartupParameters = Self.sessionLimits
        return configuration
    }

    // MARK: - Errors and time bounds

    /// Runs `body`, giving up after `timeout`: an unreachable PostgreSQL must turn into a quick
    /// 503, not a request that hangs.
    func bounded<T: Sendable>(
        _ what: String, within limit: Duration? = nil, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        // Not a task group: leaving a group waits for every child, and a query stuck on a dead
        // connection may not heed cancellation. The work is cancelled and left behind instead;
        // whatever it still does is harmless (an append it commits late is folded by the next
        // catch-up like any other instance's).
        let timeout = limit ?? self.timeout
        let failure = ClusterStoreError("PostgreSQL at \(address.host):\(address.port) did not answer within \(timeout) (\(what))")
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let once = AnswerOnce(continuation)
            let work = Task {
                do {
                    once.answer(.success(try await body()))
                } catch {
                    once.answer(.failure(error))
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                if once.answer(.failure(failure)) { work.cancel() }
            }
        }
    }

    /// A one-line reason for logs and `/readyz` (PostgresNIO's own descriptions are generic on
    /// purpose; the code and the server's message are what an operator needs).
    public static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return "PostgreSQL: \(message)" }
            if let underlying = error.underlying { return "PostgreSQL \(error.code): \(underlying)" }
            return "PostgreSQL: \(error.code)"
        }
        if let error = error as? PostgresTransactionError {
            for inner in [error.beginError, error.closureError, error.commitError, error.rollbackError].compactMap({ $0 }) {
                return describe(inner)
            }
        }
        return "\(error)"
    }
}

/// The cluster's tables were made by a newer Tally (after a downgrade of one instance).
public struct NewerClusterFormat: Error, CustomStringConvertible {
    public let address: String
    public let found: Int
    public let known: Int
    public var description: String {
        "the database \(address) holds cluster data in format \(found), written by a newer version of Tally; this version knows up to format \(known). Install that version (or a newer one) on this instance; nothing in the database has been changed."
    }
}

public struct ClusterStoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private struct JSONPayload: PayloadDecoder {
    let text: String
    let decoder: JSONDecoder
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self, from: Data(text.utf8)) }
}

/// Resumes a continuation with whichever result comes first.
private final class AnswerOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = Mutex(continuation)
    }

    @discardableResult
    func answer(_ result: Result<T, any Error>) -> Bool {
        guard
            let continuation = continuation.withLock({ slot in
                defer { slot = nil }
                return slot
            })
        else { return false }
        continuation.resume(with: result)
        return true
    }
}
