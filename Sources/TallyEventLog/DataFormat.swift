import Foundation

/// The formats of the two files in the data directory, as an operator sees them.
///
/// Older formats are carried forward at start (the database by its migrations; the ring has
/// had one format). A newer one — the data of a newer Tally, after a downgrade — is refused
/// before anything is opened for writing, so installing that version again finds the data as
/// it left it.
public enum DataFormat {
    /// The database's format: its last migration ("v6: quiz").
    public static var database: String { SQLiteProjection.format }
    /// The event ring's header version.
    public static var ring: UInt32 { RingFile.version }

    /// For the start-up log: "database v6 (quiz), ring v1".
    public static var summary: String {
        let parts = database.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        let name = parts.count == 2 ? "\(parts[0]) (\(parts[1]))" : database
        return "database \(name), ring v\(ring)"
    }

    /// Throws `NewerDataFormat` if either file was written by a newer Tally, having only read
    /// them. Called before either is opened, so a newer ring does not get a migrated database
    /// beside it, nor a newer database a new ring.
    public static func refuseNewer(databasePath: String, ringPath: String) throws {
        try SQLiteProjection.refuseNewerFormat(at: databasePath, migrator: SQLiteProjection.migrator())
        try RingFile.refuseNewerFormat(at: ringPath)
    }
}

/// Data a newer version of Tally wrote. Nothing was changed: this version reads it only to
/// find that out.
public struct NewerDataFormat: Error, CustomStringConvertible, Equatable {
    /// The file refused.
    public let path: String
    /// What it holds, e.g. `"v7: images"` or `format version 2`.
    public let found: String
    /// The newest this binary knows.
    public let known: String

    public var description: String {
        let directory = (path as NSString).deletingLastPathComponent
        let file = (path as NSString).lastPathComponent
        return
            "the data in \(directory) was written by a newer version of Tally (\(file) has \(found); this version knows up to \(known)); install that version of Tally or a newer one to use it. Nothing in \(directory) has been changed."
    }
}
