import Foundation

/// The processes whose CPU and memory a run charges to the server when it is more than one
/// process (`--pid tally=101,tally=102,haproxy=200,postgres=300+`): several instances, the
/// load balancer in front of them and the database behind them all serve the same load, so the
/// cost of a delivery or a vote is their sum. Each entry is `[label=]pid[+]`; entries with the
/// same label are reported together; `+` also counts the process's children, found afresh at
/// every reading (PostgreSQL starts a backend per connection, after the run was set up), and
/// the children it has already reaped (their CPU moves into the parent's cutime/cstime when
/// they exit, so a backend that ends mid-run is still counted).
struct WatchedProcesses: Sendable {
    struct Entry: Sendable {
        var label: String
        var pid: Int32
        var withChildren: Bool
    }

    let entries: [Entry]

    /// Labels in the order first given, for a stable report.
    var labels: [String] {
        var seen: [String] = []
        for entry in entries where !seen.contains(entry.label) { seen.append(entry.label) }
        return seen
    }

    /// Parses `--pid`. A single bare pid is not a group: the caller keeps the one-process
    /// behaviour and output for it.
    static func parse(_ text: String) throws -> WatchedProcesses {
        var entries: [Entry] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            var rest = Substring(item)
            var label: String?
            if let equals = rest.firstIndex(of: "=") {
                label = String(rest[..<equals])
                rest = rest[rest.index(after: equals)...]
            }
            let withChildren = rest.hasSuffix("+")
            if withChildren { rest = rest.dropLast() }
            guard let pid = Int32(rest), pid > 0 else { throw LoadError("--pid: \(item) is not [label=]pid[+]") }
            entries.append(Entry(label: label ?? "pid\(pid)", pid: pid, withChildren: withChildren))
        }
        guard !entries.isEmpty else { throw LoadError("--pid: no process id") }
        let single = entries.count == 1 && !text.contains("=") && !text.contains("+")
        return WatchedProcesses(entries: entries, isGroup: !single)
    }

    /// True when the run reports per group: several processes, a label or a `+` was given.
    /// A lone bare pid keeps the one-process report.
    let isGroup: Bool

    /// CPU seconds so far per label (utime + stime, plus reaped children for `+` entries).
    func cpuByLabel() -> [String: Double] {
        var totals: [String: Double] = [:]
        for entry in entries {
            var seconds = processCPU(entry.pid, includeReaped: entry.withChildren)
            if entry.withChildren {
                for child in childProcesses(of: entry.pid) { seconds += processCPU(child, includeReaped: true) }
            }
            totals[entry.label, default: 0] += seconds
        }
        return totals
    }

    /// Every pid now alive that the group covers (the children as of this reading).
    var pids: [Int32] {
        entries.flatMap { entry in [entry.pid] + (entry.withChildren ? childProcesses(of: entry.pid) : []) }
    }

    /// Resident memory per label for one /proc/<pid>/status field, summed.
    func memoryByLabel(_ field: String) -> [String: Int] {
        var totals: [String: Int] = [:]
        for entry in entries {
            let covered = [entry.pid] + (entry.withChildren ? childProcesses(of: entry.pid) : [])
            totals[entry.label, default: 0] += covered.reduce(0) { $0 + statusField(of: $1, field) }
        }
        return totals
    }
}

/// User + system CPU seconds of one process, from /proc/<pid>/stat; with `includeReaped`, also
/// those of its children it has waited for (cutime + cstime). 0 when the process is gone.
func processCPU(_ pid: Int32, includeReaped: Bool = false) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
        return 0
    }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based
    // over the whole line), so indexes 11…14 here.
    guard fields.count > 14 else { return 0 }
    var ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    if includeReaped { ticks += (Double(fields[13]) ?? 0) + (Double(fields[14]) ?? 0) }
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// One "Name:  value kB" field of /proc/<pid>/status, in bytes; 0 when absent or gone.
func statusField(of pid: Int32, _ field: String) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix(field) {
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }
    return 0
}

/// CPU spent per label between two readings, for the report.
struct CPUBreakdown: Sendable {
    var labels: [String]
    var seconds: [String: Double]

    init(labels: [String], before: [String: Double], after: [String: Double]) {
        self.labels = labels
        var seconds: [String: Double] = [:]
        for label in labels { seconds[label] = (after[label] ?? 0) - (before[label] ?? 0) }
        self.seconds = seconds
    }

    var total: Double { seconds.values.reduce(0, +) }

    /// `label=µs` per unit for every label, then `total=µs`: one line a script can read.
    func perUnit(_ units: Int) -> String {
        let divisor = Double(max(units, 1))
        let parts = labels.map { String(format: "%@_us=%.1f", $0, (seconds[$0] ?? 0) / divisor * 1e6) }
        return (parts + [String(format: "total_us=%.1f", total / divisor * 1e6)]).joined(separator: " ")
    }

    /// Human-readable: `tally 2.31 s (61 %), haproxy …`.
    var shares: String {
        let sum = max(total, 1e-9)
        return labels.map { String(format: "%@ %.2f s (%.0f %%)", $0, seconds[$0] ?? 0, (seconds[$0] ?? 0) / sum * 100) }
            .joined(separator: ", ")
    }
}
