import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TallyDiscovery
import TallyEventLog

/// sd_notify without libsystemd: one datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET` (a path,
/// or an abstract name written with a leading `@`). Does nothing when systemd did not ask.
public struct SystemdNotifier: Sendable {
    let socketPath: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public var isActive: Bool { socketPath != nil }

    @discardableResult
    public func notify(_ message: String) -> Bool {
        guard let path = socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract socket name
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let payload = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, payload, payload.count, 0, $0, length) }
        }
        return sent == payload.count
    }
}

/// Tells systemd the truth about the service: READY=1 once the listener is bound (recovery is
/// done by then), STATUS= lines, WATCHDOG=1 every WATCHDOG_USEC/2 *only while healthy* (the
/// event loop answers and the event log accepts writes), and STOPPING=1 when shutdown starts.
struct SystemdService: Service {
    let notifier: SystemdNotifier
    let ready: ListenerReady
    let health: @Sendable () async -> String?
    let status: @Sendable () -> String
    let watchdogInterval: Duration?
    let logger: Logger

    init(
        notifier: SystemdNotifier, ready: ListenerReady, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        health: @escaping @Sendable () async -> String?, status: @escaping @Sendable () -> String
    ) {
        self.notifier = notifier
        self.ready = ready
        self.health = health
        self.status = status
        self.logger = logger
        // WATCHDOG_PID, when present, says which process the watchdog is for.
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if forUs, let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    func run() async {
        // A service that returns early would stop the whole group: idle until shutdown instead.
        guard notifier.isActive else {
            try? await gracefulShutdown()
            return
        }
        await withGracefulShutdownHandler {
            _ = try? await cancelWhenGracefulShutdown {
                guard let port = await ready.wait() else { return }
                notifier.notify("READY=1\nSTATUS=listening on port \(port); \(status())")
                let tick = watchdogInterval ?? .seconds(10)
                var unhealthyLogged = false
                while !Task.isCancelled {
                    try await Task.sleep(for: tick)
                    if let problem = await health() {
                        // No WATCHDOG=1: if this lasts, systemd restarts us, which is the point.
                        if !unhealthyLogged { logger.error("unhealthy; withholding the watchdog ping", metadata: ["reason": "\(problem)"]) }
                        unhealthyLogged = true
                        notifier.notify("STATUS=unhealthy: \(problem)")
                        continue
                    }
                    unhealthyLogged = false
                    notifier.notify((watchdogInterval != nil ? "WATCHDOG=1\n" : "") + "STATUS=\(status())")
                }
            }
        } onGracefulShutdown: {
            notifier.notify("STOPPING=1\nSTATUS=stopping")
        }
    }
}

/// Health as the watchdog sees it: nil when healthy, else why not.
/// (A cluster instance whose PostgreSQL is away is not unhealthy: restarting it would not bring
/// PostgreSQL back, and it recovers by itself. `/readyz` says so instead.)
func applianceHealth(log: any EventLog, projection: SQLiteProjection?, healthFile: String?) async -> String? {
    if let failure = log.failure { return "event log: \(failure)" }
    if let projection, !projection.isReadable() { return "database does not answer" }
    if let healthFile, FileManager.default.fileExists(atPath: healthFile) {
        return "forced unhealthy by \(healthFile)"
    }
    // The event loop must answer within a second.
    let loop = MultiThreadedEventLoopGroup.singleton.any()
    let answered = try? await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask { try await loop.submit { true }.get() }
        group.addTask {
            try await Task.sleep(for: .seconds(1))
            return false
        }
        let first = try await group.next() ?? false
        group.cancelAll()
        return first
    }
    return answered == true ? nil : "event loop does not answer"
}
