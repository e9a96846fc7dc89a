import Foundation

/// Reads the box itself for the operator's console: the data disk, the open-files limit, when
/// this build was made, the network addresses. Each call asks the kernel afresh (cheap system
/// calls), so the console shows the box as it is now.
enum ApplianceProbe {
    /// Free (for an unprivileged writer) and total bytes of the file system holding `path`.
    static func disk(at path: String) -> (free: Int64, total: Int64)? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let unit = Int64(info.f_frsize)
        return (Int64(info.f_bavail) * unit, Int64(info.f_blocks) * unit)
    }

    /// The soft limit on open files (what `accept` runs into).
    static func openFilesLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    /// When this build was made: the executable's modification time. A package keeps the build's
    /// time on the files it installs; a copy made on a box with a wrong clock has that box's
    /// (earlier) time, which can only make the "clock before build" warning quieter, never false.
    static let builtAt: Date? = {
        var info = stat()
        guard stat("/proc/self/exe", &info) == 0 || stat(CommandLine.arguments[0], &info) == 0 else { return nil }
        let seconds = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        return seconds > 0 ? Date(timeIntervalSince1970: seconds) : nil
    }()

    /// The box's addresses on its networks (up, not loopback; IPv4 first, link-local IPv6 last).
    static func addresses() -> [String] {
        let found = NetworkInterface.all().filter { $0.isUp && !$0.isLoopback }
        var seen = Set<String>()
        return
            (found.filter(\.isIPv4) + found.filter { !$0.isIPv4 && !$0.address.hasPrefix("fe80") }
            + found.filter { !$0.isIPv4 && $0.address.hasPrefix("fe80") })
            .map(\.address).filter { seen.insert($0).inserted }
    }
}
