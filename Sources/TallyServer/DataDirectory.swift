import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The data directory holds the token-signing secret and the operator password hash
/// (`tally.sqlite`), and every ballot (`events.ring`): only the account the appliance runs as may
/// read it. Directory 0700, every file in it 0600, whatever umask the process was started with and
/// whatever an older version left behind.
public enum DataDirectory {
    /// The database: sessions as of the last projected event, settings, the signing secret.
    public static let databaseFile = "tally.sqlite"
    /// The event ring: every state change, in order, for recovery and replay.
    public static let ringFile = "events.ring"

    public static func databasePath(in directory: String) -> String {
        URL(fileURLWithPath: directory).appendingPathComponent(databaseFile).path
    }

    public static func ringPath(in directory: String) -> String {
        URL(fileURLWithPath: directory).appendingPathComponent(ringFile).path
    }

    public static let directoryMode: mode_t = 0o700
    public static let fileMode: mode_t = 0o600

    /// A permission this process tightened, for the log.
    public struct Tightened: Sendable, CustomStringConvertible {
        public let path: String
        public let was: mode_t
        public let now: mode_t
        public var description: String { "\(path): \(octal(was)) → \(octal(now))" }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Every file and directory this process creates from now on is private to its owner.
    /// SQLite makes `tally.sqlite`, `-wal` and `-shm` with 0644 less the umask, so a permissive
    /// umask (000 in a careless shell, 002 on some desktops) would make the secret world-readable.
    /// Called first thing by every command that writes the data directory.
    public static func keepNewFilesPrivate() {
        umask(0o077)
    }

    /// Creates the directory (0700) when `create` is set and it is absent, then sets it to 0700
    /// and every regular file directly in it to 0600. Symbolic links inside are left alone (their
    /// target is not ours to change). Returns what was tightened, so it can be logged.
    @discardableResult
    public static func makePrivate(_ path: String, create: Bool) throws -> [Tightened] {
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT, create else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            do {
                try FileManager.default.createDirectory(
                    atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: Int(directoryMode)])
            } catch {
                throw Failure(description: "cannot create the data directory \(path): \(error.localizedDescription)")
            }
            guard stat(path, &info) == 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw Failure(description: "\(path) is not a directory") }
        var tightened: [Tightened] = []
        // The directory first: once it is 0700 nobody else can open a file in it, whatever the
        // files' own modes are while they are being fixed.
        if let change = try set(path, from: info.st_mode, to: directoryMode) { tightened.append(change) }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw Failure(description: "cannot list \(path): \(error.localizedDescription)")
        }
        for name in names.sorted() {
            let file = (path as NSString).appendingPathComponent(name)
            // lstat: a symbolic link is not followed (it may point anywhere on the box).
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            if let change = try set(file, from: info.st_mode, to: fileMode) { tightened.append(change) }
        }
        return tightened
    }

    private static func set(_ path: String, from current: mode_t, to wanted: mode_t) throws -> Tightened? {
        let was = current & 0o7777
        guard was != wanted else { return nil }
        guard chmod(path, wanted) == 0 else {
            throw Failure(description: "cannot make \(path) private (chmod \(octal(wanted))): \(String(cString: strerror(errno)))")
        }
        return Tightened(path: path, was: was, now: wanted)
    }

    /// The file `tally serve` holds locked while it runs, so `tally restore` can tell a running
    /// box from a stopped one (the kernel drops the lock when the process ends, however it ends).
    public static let lockFile = "tally.lock"

    /// An exclusive `flock` on the data directory's lock file, held until this value is gone.
    public final class Lock: Sendable {
        private let fd: Int32

        /// Takes the lock, or throws `Failure` naming what holds it when another process does.
        public init(directory: String) throws {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(DataDirectory.lockFile).path
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, fileMode)
            guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let busy = errno == EWOULDBLOCK
                close(fd)
                throw Failure(
                    description: busy
                        ? "Tally is running with the data directory \(directory); stop it first (sudo systemctl stop tally)"
                        : "cannot lock \(path): \(String(cString: strerror(errno)))")
            }
            self.fd = fd
        }

        deinit { close(fd) }
    }

    static func octal(_ mode: mode_t) -> String { "0" + String(mode, radix: 8) }
}
