import Dispatch
import Foundation
import Logging
import Synchronization
import TallyDomain

/// Keeps the SQLite projection a short distance behind the ring.
///
/// Durable batches arrive from the ring's writer; they are applied to SQLite in one transaction
/// at most every `interval` (or at once when many are waiting), then the ring is told it may
/// overwrite them. Off the command path: a vote is acknowledged when the ring has it.
public final class ProjectionWriter: Sendable {
    private let projection: SQLiteProjection
    private let ring: RingEventLog
    private let logger: Logger
    private let interval: DispatchTimeInterval
    private let queue = DispatchQueue(label: "tally.projection")
    private let pending = Mutex<(events: [LoggedEvent], scheduled: Bool)>(([], false))

    public init(projection: SQLiteProjection, ring: RingEventLog, interval: Duration = .milliseconds(100), logger: Logger) {
        self.projection = projection
        self.ring = ring
        self.logger = logger
        let ms = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        self.interval = .milliseconds(max(1, ms))
    }

    /// Starts following the ring.
    public func start() {
        ring.onDurable { [self] batch in enqueue(batch) }
    }

    private func enqueue(_ batch: [LoggedEvent]) {
        let (schedule, urgent) = pending.withLock { p -> (Bool, Bool) in
            p.events += batch
            let schedule = !p.scheduled
            p.scheduled = true
            return (schedule, p.events.count > 10_000)
        }
        guard schedule else { return }
        if urgent { queue.async { self.write() } } else { queue.asyncAfter(deadline: .now() + interval) { self.write() } }
    }

    private func write() {
        let batch = pending.withLock { p -> [LoggedEvent] in
            p.scheduled = false
            defer { p.events = [] }
            return p.events
        }
        guard let last = batch.last else { return }
        do {
            try projection.apply(batch)
            ring.markProjected(through: last.sequence)
        } catch {
            // The events stay in the ring (it will not overwrite them) and are replayed into the
            // projection at the next start; retry with the next batch meanwhile.
            logger.error("cannot update the database projection; retrying", metadata: ["error": "\(error)"])
            pending.withLock { p in p.events = batch + p.events }
            queue.asyncAfter(deadline: .now() + .seconds(1)) { self.write() }
            pending.withLock { $0.scheduled = true }
        }
    }

    /// Waits until everything enqueued so far is in the database (shutdown, tests).
    public func drain() {
        queue.sync { self.write() }
    }
}
