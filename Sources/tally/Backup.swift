import ArgumentParser
import Foundation
import TallyServer

/// `tally backup`: the box's data as one archive, while it runs or not.
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent archive of the box's data (sessions, polls, votes, Q&A, quiz scores, settings).",
        discussion: """
            Safe while the server runs: the archive holds every event committed when it was taken. \
            The operator password is left out unless --include-password is given; restored without it, \
            the box asks for a new one at /presenter.
            """)

    @Option(name: .customLong("to"), help: "Archive to write (a .tar file), e.g. /media/usb/tally-backup.tar.")
    var destination: String
    @OptionGroup var data: DataDirectoryOptions
    @Flag(name: .customLong("include-password"), help: "Also carry the operator password's hash (keep the archive as safe as the box).")
    var includePassword = false

    func run() throws {
        let directory = try data.directory()
        try keepDataPrivate(directory)
        let started = Date()
        let manifest: BackupArchive.Manifest
        do {
            manifest = try BackupArchive.make(dataDirectory: directory, to: destination, includePassword: includePassword)
        } catch {
            throw ValidationError("\(error); no archive was written")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.intValue ?? 0
        print(
            """
            Wrote \(destination) (\(formatSize(size)), \(String(format: "%.1f", Date().timeIntervalSince(started))) s): \
            \(plural(manifest.sessions, "session")), \(plural(manifest.participants, "participant")), \
            \(plural(manifest.ballots, "ballot")), \(plural(manifest.questions, "question")); \
            every event up to #\(manifest.committedThrough); operator password \(manifest.operatorPassword ? "included" : "not included").
            """)
    }
}

/// `tally restore`: puts an archive back onto a stopped box.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put a backup archive back into the data directory of a stopped box.",
        discussion: """
            Checks the archive's checksums and format first; nothing is touched if they fail. \
            A data directory that already holds data is only replaced with --force, and its files are then \
            kept in before-restore-<time>/ inside it. Phones reconnect and start from the restored state.
            """)

    @Argument(help: "The archive (from `tally backup` or the operator page's download).")
    var archive: String
    @OptionGroup var data: DataDirectoryOptions
    @Flag(help: "Replace the data already in the data directory (it is moved aside, not deleted).")
    var force = false

    func run() throws {
        let directory = try data.directory()
        DataDirectory.keepNewFilesPrivate()
        guard FileManager.default.fileExists(atPath: archive) else { throw ValidationError("no such file: \(archive)") }
        let restored: BackupArchive.Restored
        do {
            restored = try BackupArchive.restore(archive, into: directory, force: force)
        } catch {
            throw ValidationError("\(error)")
        }
        let m = restored.manifest
        var lines = [
            "Restored \(archive) into \(directory): \(plural(m.sessions, "session")), \(plural(m.participants, "participant")), \(plural(m.ballots, "ballot")), \(plural(m.questions, "question")) (backup of \(printable(m.createdAt)) by Tally \(printable(m.tallyVersion)))."
        ]
        if let aside = restored.setAside { lines.append("The data that was there is kept in \(aside).") }
        lines.append(
            restored.operatorPassword
                ? "The operator password is the one the backup carried."
                : "The archive has no operator password: choose one at /presenter when the server starts (or run `tally reset-password`).")
        lines.append("Start the server (sudo systemctl start tally); phones reconnect and read the restored state.")
        print(lines.joined(separator: "\n"))
    }
}

func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }

func formatSize(_ bytes: Int) -> String {
    bytes < 1 << 20 ? String(format: "%.1f KiB", Double(bytes) / 1024) : String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}
