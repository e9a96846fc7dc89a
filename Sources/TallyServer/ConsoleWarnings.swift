import Foundation
import TallyDiscovery

/// A problem on the box, said for venue staff: what is wrong and what to do about it.
struct ConsoleWarning: Encodable, Sendable, Equatable {
    /// Stable, for scripts and tests: `clock-before-build`, `clock-went-back`, `clock-jumped`,
    /// `disk-low`, `replay-short`, `mdns-unreachable`, `open-files-low`.
    let code: String
    let message: String
    let action: String
}

/// What the warnings are decided from: plain values the console gathers (the clock, the
/// disk, the ring, avahi, the open-files limit), so the decisions are pure and testable.
struct ApplianceFacts: Sendable {
    var now: Date
    /// When this build of Tally was made (nil when unknown).
    var builtAt: Date?
    /// The newest timestamp in the event ring (it never decreases).
    var newestEvent: Date?
    /// The latest jump of the wall clock against the monotonic clock in the last 15 minutes:
    /// seconds (positive: forward) and when it was seen.
    var clockJump: (seconds: TimeInterval, at: Date)?
    var diskFreeBytes: Int64?
    var diskTotalBytes: Int64?
    /// The ring dropped events younger than the retention to make room.
    var ringLimitedByCapacity = false
    /// Age of the oldest event replay still serves (nil: none).
    var oldestEventAge: TimeInterval?
    var retention: TimeInterval = 24 * 3600
    var advertising: AdvertisingStatus.State
    /// The soft RLIMIT_NOFILE (nil when unknown).
    var openFilesLimit: Int?
    var maxConnections: Int
}

enum ConsoleWarnings {
    /// Less free than this (bytes, or share of the disk) and the disk counts as filling.
    static let lowDiskBytes: Int64 = 1 << 30
    static let lowDiskShare = 0.10
    /// A wall clock that moves this much more or less than the monotonic clock has jumped.
    static let clockJumpThreshold: TimeInterval = 5
    /// Descriptors beside connections: the ring, the database, listeners, logs (the start-up
    /// check in `raiseOpenFileLimit` asks for the same margin).
    static let descriptorReserve = 256

    static func check(_ facts: ApplianceFacts) -> [ConsoleWarning] {
        var warnings: [ConsoleWarning] = []
        let setTheClock =
            "Connect the box to a network that gives it the time (or set it by hand: sudo date -s 'YYYY-MM-DD HH:MM'), then restart Tally."
        if let built = facts.builtAt, facts.now < built {
            warnings.append(
                ConsoleWarning(
                    code: "clock-before-build",
                    message:
                        "The clock looks wrong: it says \(day(facts.now)), before this software was built (\(day(built))). A box without a real-time clock and no network starts with a wrong date.",
                    action: setTheClock))
        } else if let newest = facts.newestEvent, facts.now.addingTimeInterval(clockJumpThreshold) < newest {
            warnings.append(
                ConsoleWarning(
                    code: "clock-went-back",
                    message:
                        "The clock looks wrong: it says \(minute(facts.now)), earlier than the newest stored event (\(minute(newest))). Replay by age and exported times may be off.",
                    action: setTheClock))
        }
        if let jump = facts.clockJump {
            warnings.append(
                ConsoleWarning(
                    code: "clock-jumped",
                    message:
                        "The clock jumped \(jump.seconds > 0 ? "forward" : "back") by \(duration(abs(jump.seconds))) at \(minute(jump.at)). Votes, order and countdowns are unaffected; times in exports may be.",
                    action:
                        "If the time is right now, nothing to do (it was probably set by the network). If not, set it (sudo date -s 'YYYY-MM-DD HH:MM') and restart Tally."
                ))
        }
        if let free = facts.diskFreeBytes, let total = facts.diskTotalBytes, total > 0,
            free < lowDiskBytes || Double(free) / Double(total) < lowDiskShare
        {
            warnings.append(
                ConsoleWarning(
                    code: "disk-low",
                    message:
                        "The data disk is filling: \(bytes(free)) free (\(percent(Double(free) / Double(total))) of \(bytes(total))). Ballots are safe in the ring, but the database and exports need room to grow.",
                    action:
                        "Free space on the disk that holds the data directory (old exports and logs: sudo journalctl --vacuum-size=100M), or move the data directory to a larger disk."
                ))
        }
        if facts.ringLimitedByCapacity, (facts.oldestEventAge ?? 0) < facts.retention {
            warnings.append(
                ConsoleWarning(
                    code: "replay-short",
                    message:
                        "Replay reaches back only \(duration(facts.oldestEventAge ?? 0)) (the ring is full); phones away longer than that reload the whole session instead of catching up. The retention is \(duration(facts.retention)).",
                    action:
                        "Give the ring more space: set ring-size in /etc/tally/tally.conf (e.g. 4GiB), stop Tally, move events.ring out of the data directory and start it again. Sessions and ballots are kept."
                ))
        }
        switch facts.advertising.phase {
        case .unreachable, .failed:
            warnings.append(
                ConsoleWarning(
                    code: "mdns-unreachable",
                    message:
                        "Not advertised on the network (\(facts.advertising.reason ?? "avahi-daemon cannot be reached")): kiosks and phones looking for \"\(facts.advertising.name)\" will not find the box.",
                    action:
                        "Start avahi-daemon (sudo systemctl restart avahi-daemon); Tally advertises again by itself within seconds. Meanwhile open displays by the box's address."
                ))
        case .disabled, .starting, .advertised, .withdrawn:
            break
        }
        if let limit = facts.openFilesLimit, limit < facts.maxConnections + descriptorReserve {
            warnings.append(
                ConsoleWarning(
                    code: "open-files-low",
                    message:
                        "The open-files limit (\(grouped(limit))) is below the connection cap (\(grouped(facts.maxConnections)) plus \(descriptorReserve) for the box itself): past about \(grouped(max(0, limit - descriptorReserve))) connections, phones will be refused.",
                    action:
                        "Raise LimitNOFILE in the systemd unit (the packaged one sets 65536) or ulimit -n before starting Tally, or lower max-connections in /etc/tally/tally.conf; then restart."
                ))
        }
        return warnings
    }

    /// A jump of the wall clock between two readings: how much more (or less) it moved than
    /// the monotonic clock, when that is more than the threshold.
    static func clockJump(wallElapsed: TimeInterval, monotonicElapsed: TimeInterval) -> TimeInterval? {
        let drift = wallElapsed - monotonicElapsed
        return abs(drift) > clockJumpThreshold ? drift : nil
    }

    // MARK: Words for people

    /// "3 h 5 min", "45 min", "40 s", "2 days 3 h".
    static func duration(_ seconds: TimeInterval) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min" }
        if s < 86400 { return s % 3600 / 60 == 0 ? "\(s / 3600) h" : "\(s / 3600) h \(s % 3600 / 60) min" }
        let days = s / 86400 == 1 ? "1 day" : "\(s / 86400) days"
        return s % 86400 / 3600 == 0 ? days : "\(days) \(s % 86400 / 3600) h"
    }

    /// "2.5 GB", "812 MB" (decimal units, as disks are sold).
    static func bytes(_ n: Int64) -> String {
        let units: [(Double, String)] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
        for (size, unit) in units where Double(n) >= size {
            let value = Double(n) / size
            return value < 10 ? String(format: "%.1f %@", value, unit) : "\(Int(value.rounded())) \(unit)"
        }
        return "\(n) bytes"
    }

    /// "20,000".
    static func grouped(_ n: Int) -> String {
        let digits = Array(String(abs(n)))
        let groups = stride(from: digits.count, to: 0, by: -3).reversed().map { String(digits[max(0, $0 - 3)..<$0]) }
        return (n < 0 ? "-" : "") + groups.joined(separator: ",")
    }

    static func percent(_ share: Double) -> String {
        share < 0.01 ? String(format: "%.1f %%", share * 100) : "\(Int((share * 100).rounded())) %"
    }

    private static func day(_ date: Date) -> String { format(date, "yyyy-MM-dd") }
    private static func minute(_ date: Date) -> String { format(date, "yyyy-MM-dd HH:mm 'UTC'") }

    private static func format(_ date: Date, _ pattern: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = pattern
        return formatter.string(from: date)
    }
}
