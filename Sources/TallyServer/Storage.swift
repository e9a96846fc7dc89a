import Foundation
import Logging
import TallyCluster
import TallyDomain
import TallyEventLog

/// Where the sessions live, opened and recovered: the embedded appliance's data directory, or
/// a cluster's PostgreSQL. Everything after this is the same server.
struct Storage {
    let venue: Venue
    let log: any EventLog
    let consoleLog: any ConsoleLog
    let settings: any SettingsStore
    /// One box: the SQLite projection (exports read ballot times from it; `/readyz` checks it).
    let projection: SQLiteProjection?
    let projectionWriter: ProjectionWriter?
    let cluster: ClusterParts?
}

/// One box: the ring file and the SQLite projection in the data directory.
func openAppliance(_ configuration: TallyConfiguration, notifier: SystemdNotifier, logger: Logger) throws -> Storage {
    let dataDirectory = URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL
    let databasePath = DataDirectory.databasePath(in: dataDirectory.path)
    let ringPath = DataDirectory.ringPath(in: dataDirectory.path)
    // Data a newer Tally wrote (after a downgrade) is refused before anything here writes to the
    // directory, so installing that version again finds it whole. Thrown as is: `tally serve`
    // says it in one line and exits with its own status, which the unit does not restart.
    try DataFormat.refuseNewer(databasePath: databasePath, ringPath: ringPath)
    // The secret, the password hash and every ballot live here: private whatever the umask, and
    // a directory left readable by an older version is repaired.
    DataDirectory.keepNewFilesPrivate()
    do {
        for change in try DataDirectory.makePrivate(dataDirectory.path, create: true) {
            logger.notice(
                "permissions tightened in the data directory",
                metadata: [
                    "path": "\(change.path)", "was": "\(DataDirectory.octal(change.was))", "now": "\(DataDirectory.octal(change.now))",
                ])
        }
    } catch {
        throw StartupError("\(error)")
    }
    let projection: SQLiteProjection
    let restored: [SQLiteProjection.RestoredSession]
    let projected: UInt64
    do {
        projection = try SQLiteProjection(path: databasePath)
        projected = try projection.projectedThrough()
        restored = try projection.load()
    } catch let error as NewerDataFormat {
        throw error
    } catch {
        throw StartupError("cannot open the database at \(databasePath): \(error)")
    }

    // Recovering a large ring takes a moment: tell systemd not to time the start out meanwhile.
    notifier.notify("EXTEND_TIMEOUT_USEC=60000000\nSTATUS=recovering the event log")
    var ringOptions = RingEventLog.Options()
    ringOptions.capacity = configuration.ringSize
    ringOptions.durability = configuration.durability
    ringOptions.retention = configuration.retention
    let log: RingEventLog
    do {
        log = try RingEventLog(path: ringPath, options: ringOptions, projectedThrough: projected, logger: logger)
    } catch let error as NewerDataFormat {
        throw error
    } catch {
        throw StartupError("\(error)")
    }

    // Older formats have been carried forward by now: this is what the directory holds.
    logger.info("data format", metadata: ["data_dir": "\(dataDirectory.path)", "format": "\(DataFormat.summary)"])

    // The projection holds every event up to `projected`; the ring holds what came after.
    let tail = try log.events(after: projected)
    if let first = tail.first, first.sequence > projected + 1 {
        logger.critical(
            "events missing between the database and the ring", metadata: ["from": "\(projected + 1)", "to": "\(first.sequence - 1)"])
    }
    for gap in log.recoveryGaps {
        logger.error("corrupt records skipped in the event ring", metadata: ["sequences": "\(gap.lowerBound)...\(gap.upperBound)"])
    }
    let venue = Venue(
        writer: .embedded(log), limits: configuration.limits, maxSessions: configuration.maxSessions,
        resultsInterval: configuration.resultsInterval)
    venue.restore(restored)
    venue.recover(from: tail)
    // Never from before what the log and the quiz questions have seen (a box without a
    // real-time clock may boot with its clock behind).
    ServerClock.start(notBefore: [tail.last?.timestamp, venue.newestQuizOpening].compactMap { $0 }.max())
    venue.resumeCountdowns()
    try projection.apply(tail)
    log.markProjected(through: tail.last?.sequence ?? projected)
    let reach = log.reach()
    logger.info(
        "event log recovered",
        metadata: [
            "ring": "\(ringPath)", "size": "\(formatBytes(log.capacity))", "created": "\(log.created)",
            "retained": "\(reach.retainedEvents)", "replayed": "\(tail.count)", "sessions": "\(venue.sessionCount)",
            "epoch": "\(log.epoch)", "durability": "\(configuration.durability.rawValue)",
            "recovery_ms": "\(milliseconds(log.recoveryDuration))",
            "oldest": "\(reach.oldestTimestamp.map { "\(Int(Date().timeIntervalSince($0)))s ago" } ?? "none")",
        ])
    return Storage(
        venue: venue, log: log, consoleLog: log, settings: projection, projection: projection,
        projectionWriter: ProjectionWriter(projection: projection, ring: log, logger: logger), cluster: nil)
}

/// A cluster: the event log, the settings and the shared counters in PostgreSQL. The state of
/// every session is the fold of the log, read at start (there is no projection to load).
func openCluster(_ configuration: TallyConfiguration, logger: Logger) async throws -> Storage {
    guard let url = configuration.store else { preconditionFailure("openCluster without a store") }
    let address: StoreAddress
    do {
        address = try StoreAddress(url: url, password: configuration.storePassword)
    } catch {
        throw StartupError("\(error)")
    }
    let store = ClusterStore(address: address, logger: logger)
    // The pool runs for the life of the process (stopped after the services, in `ClusterParts.stop`).
    let pool = Task { await store.run() }
    let start = ContinuousClock.now
    logger.info("connecting to the cluster's database", metadata: ["store": "\(address)"])
    let epoch: String
    var attempt = 0
    while true {
        do {
            epoch = try await store.prepare()
            break
        } catch let error as NewerClusterFormat {
            pool.cancel()
            throw error
        } catch {
            // An instance started before its PostgreSQL (a reboot of the whole rack) waits for it.
            attempt += 1
            let reason = ClusterStore.describe(error)
            if attempt == 1 || attempt % 10 == 0 {
                logger.warning(
                    "the cluster's database does not answer yet; waiting", metadata: ["store": "\(address)", "error": "\(reason)"])
            }
            if attempt >= 60 {
                pool.cancel()
                throw StartupError("the cluster's database at \(address) does not answer: \(reason)")
            }
            try await Task.sleep(for: .seconds(1))
        }
    }
    let settings = ClusterSettings(store: store, initial: try await store.settings())
    let writerLog = ClusterLog(epoch: epoch, store: store, retention: configuration.retention)
    let writer = ClusterWriter(store: store, log: writerLog, settings: settings, logger: logger)
    let venue = Venue(
        writer: .cluster(writer), limits: configuration.limits, maxSessions: configuration.maxSessions,
        resultsInterval: configuration.resultsInterval)
    writer.attach(venue)
    // The state is the fold of the whole log, in order: the same `apply` live commands use.
    var batch: [LoggedEvent] = []
    var count = 0
    var newest: LoggedEvent?
    try await store.allEvents { row in
        writer.noteFolded(row)
        batch.append(row.logged)
        count += 1
        newest = row.logged
        if batch.count >= 10_000 {
            venue.recover(from: batch)
            batch.removeAll(keepingCapacity: true)
        }
    }
    venue.recover(from: batch)
    writerLog.folded(through: newest?.sequence ?? 0, newestTimestamp: newest?.timestamp)
    ServerClock.start(notBefore: [newest?.timestamp, venue.newestQuizOpening].compactMap { $0 }.max())
    venue.resumeCountdowns()
    logger.info(
        "cluster log folded",
        metadata: [
            "store": "\(address)", "epoch": "\(epoch)", "events": "\(count)", "sessions": "\(venue.sessionCount)",
            "through": "\(newest?.sequence ?? 0)", "ms": "\(milliseconds(start.duration(to: .now)))",
        ])
    return Storage(
        venue: venue, log: writerLog, consoleLog: writerLog, settings: settings, projection: nil, projectionWriter: nil,
        cluster: ClusterParts(store: store, writer: writer, pool: pool, logger: logger))
}
