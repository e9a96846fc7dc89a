import Foundation
import GRDB

extension SQLiteProjection {
    /// Copies the database at `source` into a new file at `destination` with SQLite's online
    /// backup, in one step: a read transaction on the source, so the copy is the database as of
    /// one committed moment — `projected_through` and every row agree — while the server goes on
    /// writing beside it (a reader never blocks SQLite's WAL writer).
    public static func onlineBackup(databaseAt source: String, to destination: String) throws {
        guard FileManager.default.fileExists(atPath: source) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: source])
        }
        let from = try DatabaseQueue(path: source)
        let to = try DatabaseQueue(path: destination)
        try from.backup(to: to)
        try to.close()
        try from.close()
    }

    /// Removes a setting (a backup made without the operator password leaves it out).
    public func removeSetting(_ key: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [key]) }
    }

    /// How many rows each table holds, for the summaries of backup and restore.
    public func counts() throws -> (sessions: Int, participants: Int, ballots: Int, questions: Int) {
        try pool.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions") ?? 0,
                try Int.fetchOne(db, sql: "SELECT count(*) FROM participants") ?? 0,
                try Int.fetchOne(db, sql: "SELECT count(*) FROM ballots") ?? 0,
                try Int.fetchOne(db, sql: "SELECT count(*) FROM questions") ?? 0
            )
        }
    }

    /// How many sessions the database at `path` holds, read without opening it for writing
    /// (no migration, nothing created): for messages about data that is about to be refused.
    public static func sessionCount(readOnlyAt path: String) throws -> Int {
        var config = Configuration()
        config.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: config)
        defer { try? queue.close() }
        return try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions") ?? 0 }
    }

    /// Writes the write-ahead log into the main file and closes the pool, so the file alone is
    /// the whole database (it is about to be archived or moved).
    public func checkpointAndClose() throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try pool.close()
    }
}
