// tally-bench: measures the event ring on this machine. Run it with a release build:
//
//   swift run -c release tally-bench [--dir DIR] [--size 1GiB] [--seconds 3]
//
// Prints one table: appends/s with --durability os and with fsync under 1, 8 and 64 concurrent
// writers (group commit), replay read throughput from the mapping, and recovery time of a full
// ring. Events are 500-byte JSON payloads, as in ADR-002.
import Foundation
import Logging
import Synchronization
import TallyEventLog

struct Options {
    var directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-bench-\(getpid())").path
    var size = 1 << 30
    var seconds = 3.0
}

func parseOptions() -> Options {
    var options = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let arg = args.next() {
        switch arg {
        case "--dir": options.directory = args.next() ?? options.directory
        case "--seconds": options.seconds = Double(args.next() ?? "") ?? options.seconds
        case "--size":
            let text = args.next() ?? ""
            let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20)]
            if let (suffix, factor) = units.first(where: { text.hasSuffix($0.0) }), let n = Int(text.dropLast(suffix.count)) {
                options.size = n * factor
            } else if let n = Int(text) {
                options.size = n
            }
        case "-h", "--help":
            print("usage: tally-bench [--dir DIR] [--size 1GiB] [--seconds 3]")
            exit(0)
        default:
            FileHandle.standardError.write("unknown option \(arg)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    return options
}

let options = parseOptions()
try? FileManager.default.removeItem(atPath: options.directory)
try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: options.directory) }
let logger: Logger = {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    return logger
}()

/// A ballot-shaped JSON payload of exactly 500 bytes.
let payload: Data = {
    let head = #"{"optionIds":["o2"],"participantId":"k3m9q2xw7p4z","pollId":"rdyq9kp5","note":""#
    let tail = #""}"#
    return Data((head + String(repeating: "x", count: 500 - head.utf8.count - tail.utf8.count) + tail).utf8)
}()

func openRing(_ name: String, _ durability: Durability) throws -> RingEventLog {
    var ringOptions = RingEventLog.Options()
    ringOptions.capacity = options.size
    ringOptions.durability = durability
    let log = try RingEventLog(path: options.directory + "/" + name, options: ringOptions, projectedThrough: 0, logger: logger)
    log.markProjected(through: .max)  // benchmark the ring alone: nothing waits for a projection
    return log
}

func elapsed(_ start: ContinuousClock.Instant) -> Double {
    let d = start.duration(to: .now)
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

let rows = Mutex<[(String, String)]>([])
func report(_ name: String, _ value: String) {
    rows.withLock { $0.append((name, value)) }
    print(name.padding(toLength: 60, withPad: " ", startingAt: 0) + value)
}

func rate(_ n: Double) -> String {
    n >= 1e6 ? String(format: "%.2f M/s", n / 1e6) : String(format: "%.0f /s", n)
}

print(
    "tally-bench: ring \(options.size >> 20) MiB in \(options.directory), \(ProcessInfo.processInfo.activeProcessorCount) cores, 500-byte events\n"
)

// 1. Appends with --durability os: the copy into the mapping, no system call.
do {
    let log = try openRing("os.ring", .os)
    let batch = [payload]
    var count = 0
    let start = ContinuousClock.now
    while elapsed(start) < options.seconds {
        for _ in 0..<1000 { _ = try log.appendEncoded(sessionId: "s1", type: "ballot.cast", payloads: batch) }
        count += 1000
    }
    let seconds = elapsed(start)
    report(
        "appends, durability os, 1 writer",
        rate(Double(count) / seconds) + String(format: " (%.0f MB/s)", Double(count * 500) / seconds / 1e6))
}

// 2. Acknowledged appends with --durability fsync: each writer waits for its event's msync;
//    concurrent writers share one sync (group commit).
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

func acknowledgedRate(log: RingEventLog, writers: Int, seconds: Double, event: Data) async throws -> Double {
    let acknowledged = Counter()
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for w in 0..<writers {
            group.addTask {
                while elapsed(start) < seconds {
                    let range = try log.appendEncoded(sessionId: "s\(w % 5)", type: "ballot.cast", payloads: [event])
                    try await log.waitUntilDurable(range.upperBound)
                    acknowledged.value.add(1, ordering: .relaxed)
                }
            }
        }
        try await group.waitForAll()
    }
    return Double(acknowledged.value.load(ordering: .relaxed)) / elapsed(start)
}

for writers in [1, 8, 64] {
    let log = try openRing("fsync-\(writers).ring", .fsync)
    let perSecond = try await acknowledgedRate(log: log, writers: writers, seconds: options.seconds, event: payload)
    report("acknowledged appends, durability fsync, \(writers) writer\(writers == 1 ? "" : "s")", rate(perSecond))
}

// 3. Fill a ring completely, then read every record back from the mapping, then recover it.
do {
    let name = "full.ring"
    var filled = 0
    do {
        let log = try openRing(name, .os)
        let records = options.size / 544 + 1000  // 544 bytes a record with header and names: wrap at least once
        let payloads = Array(repeating: payload, count: 100)
        let start = ContinuousClock.now
        while filled < records {
            _ = try log.appendEncoded(sessionId: "s\(filled % 5)", type: "ballot.cast", payloads: payloads)
            filled += 100
        }
        report("fill \(options.size >> 20) MiB ring, batches of 100", rate(Double(filled) / elapsed(start)))

        var bytes = 0
        var scratch = [UInt8](repeating: 0, count: 4096)
        let readStart = ContinuousClock.now
        var passes = 0
        while elapsed(readStart) < options.seconds / 2 || passes == 0 {
            log.forEachRecord(after: 0) { _, record in
                scratch.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: record.prefix(4096))) }
                bytes += record.count
            }
            passes += 1
        }
        let readSeconds = elapsed(readStart)
        report("replay read from the mapping (copy out)", String(format: "%.2f GB/s", Double(bytes) / readSeconds / 1e9))
        let decodeStart = ContinuousClock.now
        let decoded = try log.events(after: log.durableSequence > 20_000 ? log.durableSequence - 20_000 : 0).count
        report("replay with JSON decode into events", rate(Double(decoded) / elapsed(decodeStart)))
    }
    let log = try openRing(name, .os)
    report(
        "recovery of a full \(options.size >> 20) MiB ring (\(log.reach().retainedEvents) events)",
        String(
            format: "%.2f s", Double(log.recoveryDuration.components.seconds) + Double(log.recoveryDuration.components.attoseconds) / 1e18))
}

print("\n| measurement | result |\n|---|---|")
for (name, value) in rows.withLock({ $0 }) { print("| \(name) | \(value) |") }
