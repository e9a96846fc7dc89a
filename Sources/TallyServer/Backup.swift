import Crypto
import Foundation
import TallyDomain
import TallyEventLog

#if canImport(Glibc)
import Glibc
#endif

/// A box's data as one file, to carry off after an event or to put back on a box.
///
/// The archive is a plain POSIX tar (staff can list and unpack it with `tar`), holding:
/// - `tally-backup.json`, the manifest: archive format, the Tally that made it, when, the
///   committed point it captures, what it holds;
/// - `tally.sqlite`, the database as of that point: SQLite's online backup of the projection,
///   with the events the ring had committed beyond it folded in, so one file is the whole state;
/// - `SHA256SUMS`, last, in `sha256sum` format over the two members before it (`tar xf` then
///   `sha256sum -c SHA256SUMS` checks an archive by hand; `tally restore` checks it itself).
///
/// The ring's older history is not carried: a restored box starts a new event-id epoch (see
/// `restore`), so no phone could ask to replay it.
public enum BackupArchive {
    /// The archive format this Tally writes and the newest it reads.
    public static let format = 1
    static let manifestName = "tally-backup.json"
    static let databaseName = DataDirectory.databaseFile
    static let checksumsName = "SHA256SUMS"
    /// Settings that are the operator's credentials; left out unless asked for.
    static let passwordSettings = ["operator_password", "operator_revoked"]
    /// Never archived: the key operator tokens are signed with (see `operatorKeySetting`).
    static let neverArchived = [operatorKeySetting]

    public struct Manifest: Codable, Sendable, Equatable {
        public var format: Int
        public var tallyVersion: String
        public var createdAt: String
        public var applianceId: String?
        /// Every event up to this sequence is in the archive.
        public var committedThrough: UInt64
        public var sessions: Int
        public var participants: Int
        public var ballots: Int
        public var questions: Int
        public var operatorPassword: Bool
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: making

    /// Writes an archive of the data directory `directory` to `destination`, whether a server is
    /// running on it or not. `scratch` is a directory for the temporary copy (same disk as the
    /// data, so the copy never leaves the box's private storage). Returns the manifest.
    @discardableResult
    public static func make(
        dataDirectory directory: String, to destination: String, includePassword: Bool, scratch: String? = nil
    ) throws -> Manifest {
        let databasePath = DataDirectory.databasePath(in: directory)
        guard FileManager.default.fileExists(atPath: databasePath) else {
            throw Failure("no Tally data in \(directory) (looked for \(databasePath))")
        }
        let work = try temporaryDirectory(in: scratch ?? directory)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let copy = (work as NSString).appendingPathComponent(databaseName)

        // The database first, then the ring's events after the copy's `projected_through`: the
        // ring keeps those until the projection has them, so they are still there. Should the
        // server have projected and overwritten them meanwhile (a tiny ring under a storm),
        // start again from a newer copy.
        var attempt = 0
        var projection: SQLiteProjection
        var through: UInt64
        while true {
            attempt += 1
            try? FileManager.default.removeItem(atPath: copy)
            do {
                try SQLiteProjection.onlineBackup(databaseAt: databasePath, to: copy)
            } catch {
                throw Failure("cannot copy the database \(databasePath): \(error)")
            }
            projection = try SQLiteProjection(path: copy)
            through = try projection.projectedThrough()
            let tail = try RingEventLog.committedTail(ringAt: DataDirectory.ringPath(in: directory), after: through)
            if tail.complete {
                if !tail.events.isEmpty {
                    try projection.apply(tail.events)
                    through = tail.events[tail.events.count - 1].sequence
                }
                break
            }
            try projection.checkpointAndClose()
            guard attempt < 5 else {
                throw Failure("the box wrote faster than the backup could read its event ring; try again in a quieter moment")
            }
        }
        for key in neverArchived { try projection.removeSetting(key) }
        if !includePassword {
            for key in passwordSettings { try projection.removeSetting(key) }
        }
        let counts = try projection.counts()
        let hasPassword = try projection.setting("operator_password") != nil
        let manifest = Manifest(
            format: format, tallyVersion: TallyConfiguration.version, createdAt: EventTime.format(EventTime.milliseconds(Date())),
            applianceId: try projection.setting("appliance_id"), committedThrough: through,
            sessions: counts.sessions, participants: counts.participants, ballots: counts.ballots, questions: counts.questions,
            operatorPassword: includePassword && hasPassword)
        try projection.checkpointAndClose()

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let manifestBytes = try encoder.encode(manifest)
        let partial = destination + ".partial"
        let writer = try TarWriter(path: partial)
        do {
            var sums: [(String, String)] = []
            sums.append((manifestName, try writer.add(name: manifestName, data: manifestBytes)))
            sums.append((databaseName, try writer.add(name: databaseName, file: copy)))
            let listing = sums.map { "\($0.1)  \($0.0)\n" }.joined()
            _ = try writer.add(name: checksumsName, data: Data(listing.utf8))
            try writer.finish()
        } catch {
            writer.abandon()
            unlink(partial)
            throw error
        }
        // Complete under its real name only once it is whole.
        guard rename(partial, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(partial)
            throw Failure("cannot write \(destination): \(reason)")
        }
        return manifest
    }

    // MARK: reading

    /// An archive whose checksums and format were verified, unpacked into a scratch directory.
    public struct Verified: Sendable {
        public let manifest: Manifest
        /// The database file, unpacked.
        public let database: String
        let work: String

        /// Removes the unpacked files.
        public func discard() { try? FileManager.default.removeItem(atPath: work) }
    }

    /// Reads the archive at `path` into `scratch`, checking every member against `SHA256SUMS`
    /// and the format against what this Tally reads. Nothing outside `scratch` is touched.
    public static func verify(_ path: String, scratch: String) throws -> Verified {
        let work = try temporaryDirectory(in: scratch)
        do {
            let members = try TarReader.unpack(
                path, into: work, expecting: [manifestName: 64 << 10, databaseName: Int.max, checksumsName: 64 << 10])
            guard let sumsFile = members[checksumsName] else {
                throw Failure("\(path) is not a Tally backup (no \(checksumsName) in it)")
            }
            let listed = try parseChecksums(try Data(contentsOf: URL(fileURLWithPath: sumsFile)))
            for name in [manifestName, databaseName] {
                guard let file = members[name], let expected = listed[name] else {
                    throw Failure("\(path) is not a complete Tally backup (\(name) is missing)")
                }
                guard try sha256(ofFile: file) == expected else {
                    throw Failure("\(path) is damaged: \(name) does not match its checksum; nothing was restored")
                }
            }
            let manifestData = try Data(contentsOf: URL(fileURLWithPath: members[manifestName]!))
            // The format first, on its own: a newer manifest may not decode as this one.
            struct Format: Decodable { let format: Int }
            guard let version = try? JSONDecoder().decode(Format.self, from: manifestData).format else {
                throw Failure("\(path) has an unreadable manifest")
            }
            guard version <= format else {
                throw Failure(
                    "\(path) was made by a newer Tally (archive format \(version); this Tally \(TallyConfiguration.version) reads format \(format) and older). Restore it with that version or newer."
                )
            }
            let manifest = try JSONDecoder().decode(Manifest.self, from: manifestData)
            return Verified(manifest: manifest, database: members[databaseName]!, work: work)
        } catch {
            try? FileManager.default.removeItem(atPath: work)
            throw error
        }
    }

    // MARK: restoring

    /// What a restore did, for its summary.
    public struct Restored: Sendable {
        public let manifest: Manifest
        /// Where the files that were there before went (with `force`), or nil.
        public let setAside: String?
        /// Whether the restored database holds an operator password.
        public let operatorPassword: Bool
    }

    /// Files `restore` writes belong to whoever owns the data directory: restored as root onto a
    /// box whose service runs as its own user, they must still be that user's to open.
    static func giveToOwner(_ path: String, of directory: String) {
        var info = stat()
        if stat(directory, &info) == 0 { _ = chown(path, info.st_uid, info.st_gid) }
    }

    /// Scratch files of a backup or download that did not finish (the process was killed):
    /// removed by `tally serve` at start, under its lock, since they hold the signing secret.
    @discardableResult
    public static func sweepLeftovers(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        // Older than ten minutes: a `tally backup` running beside a starting server keeps its own.
        let cutoff = Date().addingTimeInterval(-600)
        let leftovers = names.filter { name in
            guard name.hasPrefix(".backup-") || name.hasPrefix(".download-") else { return false }
            let path = (directory as NSString).appendingPathComponent(name)
            let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? nil
            return (modified ?? .distantPast) < cutoff
        }
        for name in leftovers { try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(name)) }
        return leftovers
    }

    /// Puts the archive at `path` back into `directory`, which no server may be using (its lock
    /// is taken for the duration). A directory that already holds data is refused unless
    /// `force`; then its files are moved into `before-restore-<time>/` inside it, not deleted.
    ///
    /// Only the database is written back. The server then makes a new event ring, with a new
    /// epoch, at its next start: phones that knew the box before reconnect with a `stream.reset`
    /// and read the restored state, and no event id the box handed out after the backup can ever
    /// point at a different event.
    public static func restore(_ path: String, into directory: String, force: Bool) throws -> Restored {
        try DataDirectory.makePrivate(directory, create: true)
        let lock = try DataDirectory.Lock(directory: directory)
        defer { withExtendedLifetime(lock) {} }
        let verified = try verify(path, scratch: directory)
        defer { verified.discard() }
        // Opening the unpacked copy migrates it to this Tally's format, or refuses one newer than
        // this Tally — before anything in the data directory is touched.
        let hasPassword: Bool
        do {
            let copy = try SQLiteProjection(path: verified.database)
            _ = try copy.load()
            // Whatever the archive says: no operator key (a new one is made at start), the
            // password only when the manifest says it was carried, and every operator sign-in
            // from before the restore ended — also ones signed out after the backup was made.
            for key in neverArchived { try copy.removeSetting(key) }
            if !verified.manifest.operatorPassword { for key in passwordSettings { try copy.removeSetting(key) } }
            try revokeOperatorSignIns(in: copy)
            hasPassword = try copy.setting("operator_password") != nil
            try copy.checkpointAndClose()
        } catch {
            throw Failure("the database in \(path) cannot be opened: \(error)")
        }

        let existing = try FileManager.default.contentsOfDirectory(atPath: directory).filter {
            $0 == DataDirectory.databaseFile || $0.hasPrefix(DataDirectory.databaseFile + "-") || $0 == DataDirectory.ringFile
        }
        var setAside: String?
        if !existing.isEmpty {
            let database = DataDirectory.databasePath(in: directory)
            let sessions = (try? SQLiteProjection.sessionCount(readOnlyAt: database)) ?? 0
            guard force else {
                throw Failure(
                    "\(directory) already holds a box's data (\(sessions) session\(sessions == 1 ? "" : "s")); restoring replaces it. Run again with --force: the current files are kept in \(directory)/before-restore-<time>/"
                )
            }
            let aside = (directory as NSString).appendingPathComponent("before-restore-\(compactTime())")
            try FileManager.default.createDirectory(
                atPath: aside, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            giveToOwner(aside, of: directory)
            for name in existing {
                let from = (directory as NSString).appendingPathComponent(name)
                guard rename(from, (aside as NSString).appendingPathComponent(name)) == 0 else {
                    throw Failure("cannot move \(from) aside: \(String(cString: strerror(errno)))")
                }
            }
            setAside = aside
        }
        let target = DataDirectory.databasePath(in: directory)
        let staging = target + ".restoring"
        unlink(staging)
        try FileManager.default.copyItem(atPath: verified.database, toPath: staging)
        try syncFile(staging)
        // The files belong to whoever owns the directory: restored as root onto a box whose
        // service runs as its own user, they must still be that user's to open.
        giveToOwner(staging, of: directory)
        giveToOwner((directory as NSString).appendingPathComponent(DataDirectory.lockFile), of: directory)
        guard rename(staging, target) == 0 else { throw Failure("cannot write \(target): \(String(cString: strerror(errno)))") }
        syncDirectory(directory)
        return Restored(manifest: verified.manifest, setAside: setAside, operatorPassword: hasPassword)
    }

    // MARK: helpers

    static func temporaryDirectory(in parent: String) throws -> String {
        let path = (parent as NSString).appendingPathComponent(".backup-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return path
    }

    static func parseChecksums(_ data: Data) throws -> [String: String] {
        var sums: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 64 else { throw Failure("the archive's \(checksumsName) is malformed") }
            sums[parts[1].trimmingCharacters(in: .whitespaces)] = String(parts[0])
        }
        return sums
    }

    static func sha256(ofFile path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw Failure("cannot read \(path)") }
        defer { try? handle.close() }
        var hash = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hash.update(data: chunk) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func compactTime() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date())
    }

    /// A name for a downloaded archive: `tally-backup-20261203-140501.tar`.
    public static func suggestedName() -> String { "tally-backup-\(compactTime()).tar" }

    static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Failure("cannot sync \(path): \(String(cString: strerror(errno)))") }
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}

/// Writes a POSIX (ustar) tar archive, member by member, hashing each as it goes.
final class TarWriter {
    private let handle: FileHandle
    private let path: String

    init(path: String) throws {
        unlink(path)
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forWritingAtPath: path)
        else { throw BackupArchive.Failure("cannot create \(path)") }
        self.handle = handle
        self.path = path
    }

    /// Adds `data` as `name`; returns its SHA-256 (hex).
    func add(name: String, data: Data) throws -> String {
        try handle.write(contentsOf: try Self.header(name: name, size: data.count))
        try handle.write(contentsOf: data)
        try pad(data.count)
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Adds the file at `file` as `name`, streamed; returns its SHA-256 (hex).
    func add(name: String, file: String) throws -> String {
        let size = try (FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? 0
        guard let input = FileHandle(forReadingAtPath: file) else { throw BackupArchive.Failure("cannot read \(file)") }
        defer { try? input.close() }
        try handle.write(contentsOf: try Self.header(name: name, size: size))
        var hash = SHA256()
        var written = 0
        while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
            hash.update(data: chunk)
            try handle.write(contentsOf: chunk)
            written += chunk.count
        }
        guard written == size else { throw BackupArchive.Failure("\(file) changed while it was archived") }
        try pad(size)
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Two zero blocks end a tar archive; then the file is synced.
    func finish() throws {
        try handle.write(contentsOf: Data(count: 1024))
        try handle.synchronize()
        try handle.close()
    }

    func abandon() { try? handle.close() }

    private func pad(_ size: Int) throws {
        let rest = (512 - size % 512) % 512
        if rest > 0 { try handle.write(contentsOf: Data(count: rest)) }
    }

    static func header(name: String, size: Int) throws -> Data {
        // Eleven octal digits: a ustar member holds less than 8 GiB.
        guard size < 1 << 33 else { throw BackupArchive.Failure("\(name) is too large for the archive (\(size) bytes)") }
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in text.utf8.prefix(width).enumerated() { block[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            put(String(String(value, radix: 8).suffix(width - 1)).leftPadded(to: width - 1), at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(0o600, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(Int(Date().timeIntervalSince1970), at: 136, width: 12)
        block[156] = UInt8(ascii: "0")
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        put("tally", at: 265, width: 32)
        put("tally", at: 297, width: 32)
        // The checksum is computed with its own field read as spaces.
        for i in 148..<156 { block[i] = UInt8(ascii: " ") }
        let sum = block.reduce(0) { $0 + Int($1) }
        put(String(sum, radix: 8).leftPadded(to: 6), at: 148, width: 6)
        block[154] = 0
        block[155] = UInt8(ascii: " ")
        return Data(block)
    }
}

/// Reads the regular files of a tar archive (what `TarWriter` writes, or `tar` re-packs).
enum TarReader {
    /// Unpacks the archive's members into `directory`; returns name → unpacked path. Only the
    /// names in `expecting` (name → largest size accepted) are taken, each once, as regular files:
    /// anything else — another name, a path, a link, a second copy — refuses the archive, so
    /// nothing that `SHA256SUMS` does not cover is ever unpacked beside the database (SQLite would
    /// read a `-wal` or `-journal` lying next to it).
    static func unpack(_ path: String, into directory: String, expecting: [String: Int]) throws -> [String: String] {
        guard let input = FileHandle(forReadingAtPath: path) else { throw BackupArchive.Failure("cannot read \(path)") }
        defer { try? input.close() }
        var members: [String: String] = [:]
        while true {
            guard let block = try input.read(upToCount: 512), block.count == 512 else {
                throw BackupArchive.Failure("\(path) is not a Tally backup (it ends in the middle of the archive)")
            }
            let bytes = [UInt8](block)
            if bytes.allSatisfy({ $0 == 0 }) { break }
            let stored = Int(field(bytes, 148, 8).trimmingCharacters(in: .whitespaces), radix: 8)
            var copy = bytes
            for i in 148..<156 { copy[i] = UInt8(ascii: " ") }
            guard let stored, stored == copy.reduce(0, { $0 + Int($1) }) else {
                throw BackupArchive.Failure("\(path) is not a Tally backup, or is damaged (a tar header does not check)")
            }
            let name = field(bytes, 0, 100)
            guard let size = Int(field(bytes, 124, 12).trimmingCharacters(in: .whitespaces), radix: 8), size >= 0 else {
                throw BackupArchive.Failure("\(path) is damaged (a member's size is unreadable)")
            }
            let type = bytes[156]
            let padded = (size + 511) / 512 * 512
            let regular = type == UInt8(ascii: "0") || type == 0
            guard regular, let limit = expecting[name], members[name] == nil else {
                throw BackupArchive.Failure(
                    "\(path) is not a Tally backup (it holds \"\(printableName(name))\", which a backup never does)")
            }
            guard size <= limit else { throw BackupArchive.Failure("\(path) is not a Tally backup (\(name) is too large)") }
            do {
                let target = (directory as NSString).appendingPathComponent(name)
                guard FileManager.default.createFile(atPath: target, contents: nil, attributes: [.posixPermissions: 0o600]),
                    let output = FileHandle(forWritingAtPath: target)
                else { throw BackupArchive.Failure("cannot unpack \(name) into \(directory)") }
                defer { try? output.close() }
                var left = size
                while left > 0 {
                    guard let chunk = try input.read(upToCount: min(left, 1 << 20)), !chunk.isEmpty else {
                        throw BackupArchive.Failure("\(path) is truncated (\(name) is cut short)")
                    }
                    try output.write(contentsOf: chunk)
                    left -= chunk.count
                }
                if padded > size { _ = try input.read(upToCount: padded - size) }
                members[name] = target
            }
        }
        return members
    }

    /// A member name as it may be shown on a terminal (no control characters from the archive).
    private static func printableName(_ name: String) -> String {
        String(name.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) }.prefix(100))
    }

    private static func field(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> String {
        let slice = bytes[offset..<(offset + width)]
        let end = slice.firstIndex(of: 0) ?? slice.endIndex
        return String(decoding: slice[offset..<end], as: UTF8.self)
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
