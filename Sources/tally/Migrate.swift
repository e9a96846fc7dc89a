import ArgumentParser
import Foundation
import Logging
import TallyCluster
import TallyDomain
import TallyEventLog
import TallyServer

/// `tally migrate`: moves an appliance's data into a cluster's (empty) PostgreSQL.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a stopped appliance's sessions, polls, votes, Q&A, quiz scores and settings into a cluster's PostgreSQL.",
        discussion: """
            The database must hold no events yet; start the cluster's instances after the copy (an instance \
            reads the signing secret once, at start). \
            Join links and printed QR codes keep working (the signing secret comes along); the operator password \
            comes along too. Phones that were connected start again from the current state (new event ids). \
            The appliance's data directory is only read.
            """)

    @Option(name: .customLong("to"), help: "The cluster's PostgreSQL, postgresql://user@host:port/database.")
    var store: String
    @Option(name: .customLong("store-password-file"), help: "File holding the PostgreSQL password (or set TALLY_STORE_PASSWORD).")
    var storePasswordFile: String?
    @OptionGroup var data: DataDirectoryOptions

    /// What `tally migrate` copies of the settings: what keeps links, QR codes, the mDNS id and
    /// the operator's password working. Never the operator key (the cluster has its own).
    static let carried = ["secret", "appliance_id", "operator_password"]

    func run() async throws {
        let directory = try data.directory()
        let address = try clusterAddress(store, passwordFile: storePasswordFile)
        // Read from a stopped box only: a running server would go on taking votes that the
        // cluster never sees.
        let lock: DataDirectory.Lock
        do {
            lock = try DataDirectory.Lock(directory: directory)
        } catch {
            throw ValidationError("\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let databasePath = DataDirectory.databasePath(in: directory)
        guard FileManager.default.fileExists(atPath: databasePath) else {
            throw ValidationError("no appliance data in \(directory) (no \(databasePath))")
        }
        let started = Date()
        let sessions: [(session: SQLiteProjection.RestoredSession, events: [SessionEvent])]
        let tail: [LoggedEvent]
        var settings: [String: String] = [:]
        do {
            try DataFormat.refuseNewer(databasePath: databasePath, ringPath: DataDirectory.ringPath(in: directory))
            let projection = try SQLiteProjection(path: databasePath)
            let projected = try projection.projectedThrough()
            sessions = try projection.loadWithHistory()
            // What a crash left in the ring beyond the database: the same events a restart folds in.
            tail = try RingEventLog.committedTail(ringAt: DataDirectory.ringPath(in: directory), after: projected).events
            for key in Self.carried { settings[key] = try projection.setting(key) }
        } catch {
            throw ValidationError("cannot read the appliance's data in \(directory): \(error)")
        }

        var logger = Logger(label: "tally-migrate")
        logger.logLevel = .warning
        let cluster = ClusterStore(address: address, logger: logger)
        let pool = Task { await cluster.run() }
        defer { pool.cancel() }
        print("Copying \(sessions.count) sessions from \(directory) to \(address) …")
        do {
            _ = try await cluster.prepare()
            let head = try await cluster.head()
            guard head == 0 else {
                throw ValidationError(
                    "\(address) already holds a cluster's log (\(head) events): migrate into an empty database, or drop its tally_* tables first"
                )
            }
            var rows: [ClusterStore.Row] = []
            var positions: [SessionID: Int32] = [:]
            let now = Date()
            func add(_ event: SessionEvent, of session: SessionID, at time: Date) {
                positions[session, default: 0] += 1
                rows.append(
                    ClusterStore.Row(
                        logged: LoggedEvent(sequence: UInt64(rows.count + 1), sessionId: session, timestamp: time, event: event),
                        sessionSequence: positions[session]!))
            }
            for (session, events) in sessions {
                for event in events { add(event, of: session.state.id, at: now) }
            }
            for logged in tail { add(logged.event, of: logged.sessionId, at: logged.timestamp) }
            for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
                try await cluster.setSetting(key, to: value)
            }
            let history = rows
            // A big appliance's history is one long transaction: minutes, not the 5 s of a command.
            let written = try await cluster.appendUnderLock(within: .seconds(900)) { transaction in
                guard transaction.head == 0 else { throw ClusterStoreError("another process wrote to the cluster's log meanwhile") }
                return history
            }
            print(
                """
                Copied \(sessions.count + tail.filter { if case .sessionCreated = $0.event { true } else { false } }.count) sessions \
                as \(written.count) events, and the settings (signing secret, appliance id\(settings["operator_password"] == nil ? "" : ", operator password")) \
                in \(String(format: "%.1f", Date().timeIntervalSince(started))) s.
                Start the instances with --store \(address) (README, "Scaling past one box").
                """)
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("could not copy into \(address): \(ClusterStore.describe(error)); nothing was committed to its log")
        }
    }
}
