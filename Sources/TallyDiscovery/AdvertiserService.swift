import Logging
import ServiceLifecycle
import Synchronization

/// Fires once the HTTP listener is bound, with its port: nothing is advertised before there is
/// something to connect to.
public final class ListenerReady: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    public init() {}

    public func fire(port: Int) {
        let waiters = state.withLock { s -> [CheckedContinuation<Int, Never>] in
            s.port = port
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    /// The port, or nil if the task is cancelled first.
    public func wait() async -> Int? {
        let port = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let port: Int? = state.withLock { s in
                    if let port = s.port { return port }
                    s.waiters.append(continuation)
                    return nil
                }
                if let port { continuation.resume(returning: port) }
            }
        } onCancel: {
            let waiters = state.withLock { s -> [CheckedContinuation<Int, Never>] in
                defer { s.waiters = [] }
                return s.waiters
            }
            for waiter in waiters { waiter.resume(returning: -1) }
        }
        return port < 0 ? nil : port
    }
}

/// The mDNS advertisement as a service: published once the listener is bound, withdrawn on
/// graceful shutdown.
public struct AdvertiserService: Service {
    let makeAdvertisement: @Sendable (Int) -> Advertisement
    let ready: ListenerReady
    let logger: Logger
    /// Advertised or not, and why (read by the operator's console).
    public let status: AdvertisingStatus

    public init(
        ready: ListenerReady, logger: Logger, status: AdvertisingStatus, advertisement: @escaping @Sendable (Int) -> Advertisement
    ) {
        self.ready = ready
        self.logger = logger
        self.status = status
        self.makeAdvertisement = advertisement
    }

    public func run() async throws {
        guard let port = await cancelWhenGracefulShutdownOrNil({ await ready.wait() }) ?? nil else { return }
        let advertiser = Advertiser(makeAdvertisement(port), logger: logger, status: status)
        do {
            try advertiser.start()
        } catch {
            status.set(.failed, reason: "\(error)")
            logger.warning("mDNS: not advertising", metadata: ["error": "\(error)"])
            // Returning early would stop the whole service group: idle until shutdown.
            try? await gracefulShutdown()
            return
        }
        try? await gracefulShutdown()
        advertiser.stop()
    }
}

private func cancelWhenGracefulShutdownOrNil<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T? {
    try? await cancelWhenGracefulShutdown { await body() }
}
