import Dispatch
import Foundation
import Logging
import Synchronization
import TallyDomain

extension RingFile: @unchecked Sendable {}
// All mutable state of a RingFile is touched only under RingEventLog's lock; the one call made
// outside it (`syncRanges`) reads only the immutable mapping address and capacity.

/// The event log on the appliance: a memory-mapped ring file with group commit.
///
/// `append` encodes the events, copies them into the mapping and indexes them under a lock
/// (microseconds, no system call). A single writer queue then makes everything appended so far
/// durable with one `msync` (`.fsync`) — concurrent commands share it — and hands the batch to
/// the observers (the fan-out) and to the projector. With `.os` the copy into the mapping is
/// already as durable as the page cache: it survives a crash of the process, not a power cut.
public final class RingEventLog: AppendingEventLog {
    public struct Options: Sendable {
        public var capacity: Int = 1 << 30

        /// Why `bytes` cannot be a ring's size, or nil: the one rule for settings and the ring.
        public static func capacityProblem(_ bytes: Int) -> String? {
            guard bytes < RingFile.minimumCapacity || bytes > RingFile.maximumCapacity || bytes % 4096 != 0 else { return nil }
            return
                "must be a multiple of 4 KiB from \(formatBytes(RingFile.minimumCapacity)) to \(formatBytes(RingFile.maximumCapacity)), got \(bytes) bytes"
        }
        public var durability: Durability = .fsync
        /// Events older than this are no longer served for replay.
        public var retention: TimeInterval = 24 * 3600
        /// The wall clock (tests move it).
        public var now: @Sendable () -> Date = { Date() }
        public init() {}
    }

    public let epoch: String
    public let path: String
    public let capacity: Int
    /// True when this start created the ring file.
    public let created: Bool
    /// Sequences missing between retained records (corruption found at recovery).
    public let recoveryGaps: [ClosedRange<UInt64>]
    /// How long recovery (the scan and index rebuild) took.
    public let recoveryDuration: Duration

    private let options: Options
    private let file: RingFile
    private let writer = DispatchQueue(label: "tally.ring.writer")
    private let state: Mutex<State>
    private let logger: Logger

    private struct State {
        var nextSequence: UInt64
        var durableSequence: UInt64
        var lastTimestampMs: Int64
        /// Events the projection holds; the ring never overwrites anything after this.
        var projectedThrough: UInt64
        var pending: [LoggedEvent] = []
        var pendingThrough: UInt64 = 0
        var flushScheduled = false
        var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var observers: [@Sendable ([LoggedEvent]) -> Void] = []
        var failure: (any Error)?
        var evictedYoungerThanRetention = false
    }

    /// Opens or creates the ring at `path`. A new ring starts its sequence after
    /// `projectedThrough`, so sequences keep increasing across a replaced ring.
    public init(path: String, options: Options, projectedThrough: UInt64, logger: Logger) throws {
        if let problem = Options.capacityProblem(options.capacity) {
            throw RingFile.Failure.io("--ring-size \(problem)")
        }
        self.options = options
        self.logger = logger
        self.path = path
        let clock = ContinuousClock()
        let started = clock.now
        let nowMs = Int64(options.now().timeIntervalSince1970 * 1000)
        let (file, created) = try RingFile.open(path: path, capacity: options.capacity, firstSequence: projectedThrough + 1, now: nowMs)
        self.file = file
        self.created = created
        self.capacity = file.capacity
        if file.capacity != options.capacity {
            logger.warning(
                "the existing event ring keeps its size; to resize, stop Tally and move the ring file away (sessions are kept in the database)",
                metadata: ["ring": "\(path)", "size": "\(formatBytes(file.capacity))", "requested": "\(formatBytes(options.capacity))"])
        }
        self.recoveryGaps = file.recover()
        self.recoveryDuration = started.duration(to: clock.now)
        self.epoch = file.header.epoch.prefix(6).map { String(format: "%02x", $0) }.joined()
        let newest = file.slots.last
        let last = max(newest?.sequence ?? 0, projectedThrough, file.header.firstSequence > 0 ? file.header.firstSequence - 1 : 0)
        self.state = Mutex(
            State(
                nextSequence: last + 1, durableSequence: last, lastTimestampMs: newest?.timestampMs ?? 0,
                projectedThrough: projectedThrough))
    }

    public var durableSequence: UInt64 { state.withLock { $0.durableSequence } }
    /// Events the projection holds (durable − this = how far SQLite trails the ring).
    public var projectedSequence: UInt64 { state.withLock { $0.projectedThrough } }
    /// The newest timestamp written (never decreasing): a wall clock earlier than this went back.
    public var newestTimestamp: Date? {
        state.withLock { $0.lastTimestampMs > 0 ? Date(timeIntervalSince1970: Double($0.lastTimestampMs) / 1000) : nil }
    }
    public var failure: (any Error)? { state.withLock { $0.failure } }

    public func onDurable(_ observer: @escaping @Sendable ([LoggedEvent]) -> Void) {
        state.withLock { $0.observers.append(observer) }
    }

    /// Tells the ring that the projection now holds every event up to `sequence`.
    public func markProjected(through sequence: UInt64) {
        state.withLock { $0.projectedThrough = max($0.projectedThrough, sequence) }
    }

    public func append(sessionId: SessionID, events: [SessionEvent]) throws -> [LoggedEvent] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let payloads = try events.map { try encoder.encode($0.storedPayload) }
        return try appendEncoded(sessionId: sessionId, types: events.map(\.type), payloads: payloads, events: events)
    }

    /// Appends records that are already encoded (the benchmark's path; observers are not told
    /// about them). Returns their sequence numbers.
    public func appendEncoded(sessionId: SessionID, type: String, payloads: [Data]) throws -> ClosedRange<UInt64> {
        var first: UInt64 = 0
        _ = try appendEncoded(
            sessionId: sessionId, types: Array(repeating: type, count: payloads.count), payloads: payloads, events: nil,
            firstSequence: &first)
        return first...(first + UInt64(payloads.count) - 1)
    }

    private func appendEncoded(sessionId: SessionID, types: [String], payloads: [Data], events: [SessionEvent]?) throws -> [LoggedEvent] {
        var first: UInt64 = 0
        return try appendEncoded(sessionId: sessionId, types: types, payloads: payloads, events: events, firstSequence: &first)
    }

    private func appendEncoded(
        sessionId: SessionID, types: [String], payloads: [Data], events: [SessionEvent]?, firstSequence: inout UInt64
    ) throws -> [LoggedEvent] {
        let sizes = zip(types, payloads).map { RingFile.recordSize(sessionId: sessionId, type: $0, dataCount: $1.count) }
        if let big = sizes.first(where: { $0 > file.maximumRecordSize }) { throw EventLogError.eventTooLarge(big) }
        let wallMs = Int64(options.now().timeIntervalSince1970 * 1000)
        let (logged, schedule, first) = try state.withLock { state -> ([LoggedEvent], Bool, UInt64) in
            var firstSequence: UInt64 = 0
            if let failure = state.failure { throw failure }
            // Never overwrite what the projection does not hold yet: recovery needs it.
            file.protectedAfter = state.projectedThrough
            guard file.canAppend(sizes: sizes) else { throw EventLogError.busy }
            // Timestamps never go backwards within the ring, even if the wall clock does;
            // order always comes from the sequence.
            let timestamp = max(wallMs, state.lastTimestampMs)
            state.lastTimestampMs = timestamp
            let date = Date(timeIntervalSince1970: Double(timestamp) / 1000)
            var logged: [LoggedEvent] = []
            if events != nil { logged.reserveCapacity(types.count) }
            for index in types.indices {
                let sequence = state.nextSequence
                state.nextSequence += 1
                let oldest = file.slots.first
                payloads[index].withUnsafeBytes {
                    file.append(sequence: sequence, timestampMs: timestamp, sessionId: sessionId, type: types[index], data: $0)
                }
                if let oldest, file.slots.first != oldest, wallMs - oldest.timestampMs < Int64(options.retention * 1000) {
                    state.evictedYoungerThanRetention = true
                }
                if let events {
                    logged.append(LoggedEvent(sequence: sequence, sessionId: sessionId, timestamp: date, event: events[index]))
                }
            }
            state.pending += logged
            state.pendingThrough = state.nextSequence - 1
            firstSequence = state.nextSequence - UInt64(types.count)
            if options.durability == .os && state.pending.isEmpty {
                // Copied into the shared mapping is as durable as `.os` gets, and nobody is
                // waiting to be told: skip the writer queue (the benchmark's raw path).
                state.durableSequence = state.pendingThrough
                return (logged, false, firstSequence)
            }
            let schedule = !state.flushScheduled
            state.flushScheduled = true
            return (logged, schedule, firstSequence)
        }
        firstSequence = first
        if schedule { writer.async { self.flush() } }
        return logged
    }

    /// Calls `body` with every retained record after `sequence`, in place in the mapping (no
    /// copy), under the lock: keep `body` short.
    public func forEachRecord(after sequence: UInt64, _ body: (UInt64, UnsafeRawBufferPointer) -> Void) {
        state.withLock { _ in
            var index = file.slots.firstIndex(after: sequence)
            while index < file.slots.count {
                let slot = file.slots[index]
                file.withDataRegion { region in
                    body(slot.sequence, UnsafeRawBufferPointer(rebasing: region[slot.offset..<(slot.offset + slot.size)]))
                }
                index += 1
            }
        }
    }

    public func waitUntilDurable(_ sequence: UInt64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome: Result<Void, any Error>? = state.withLock { state in
                if let failure = state.failure { return .failure(failure) }
                if sequence <= state.durableSequence { return .success(()) }
                state.waiters.append((sequence, continuation))
                return nil
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }

    /// Writer queue only: one sync for everything appended since the last one.
    private func flush() {
        let (batch, through, ranges) = state.withLock { state in
            let batch = state.pending
            state.pending = []
            state.flushScheduled = false
            return (batch, state.pendingThrough, options.durability == .fsync ? file.takeDirtyRanges() : [])
        }
        guard !batch.isEmpty || through > durableSequence else { return }
        do {
            try file.syncRanges(ranges)
        } catch {
            logger.critical("event ring sync failed; refusing further commands until restart", metadata: ["error": "\(error)"])
            let failure = EventLogError.writeFailed("\(error)")
            let waiters = state.withLock { state in
                state.failure = failure
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.continuation.resume(throwing: failure) }
            return
        }
        let (ready, observers) = state.withLock { state in
            state.durableSequence = max(state.durableSequence, through)
            var ready: [CheckedContinuation<Void, any Error>] = []
            state.waiters.removeAll { waiter in
                guard waiter.sequence <= through else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return (ready, state.observers)
        }
        // Broadcast, then acknowledge: by the time a voter sees 2xx, displays are being told.
        if !batch.isEmpty { for observer in observers { observer(batch) } }
        for continuation in ready { continuation.resume() }
    }

    // MARK: reading

    public func events(of sessionId: SessionID, after: UInt64, through: UInt64) -> [LoggedEvent]? {
        let records: [RingFile.Record]? = state.withLock { state in
            guard through > after else { return [] }
            guard let oldest = servableOldest(state) else { return nil }
            // Everything after `after` must still be here, with no gap in between.
            guard after + 1 >= oldest.sequence else { return nil }
            if recoveryGaps.contains(where: { $0.upperBound > after && $0.lowerBound <= through }) { return nil }
            var result: [RingFile.Record] = []
            var index = file.slots.firstIndex(after: after)
            let sessionBytes = Array(sessionId.utf8)
            while index < file.slots.count {
                let slot = file.slots[index]
                if slot.sequence > through { break }
                if file.recordBelongs(slot, to: sessionBytes), let record = file.read(slot) { result.append(record) }
                index += 1
            }
            return result
        }
        guard let records else { return nil }
        let decoder = JSONDecoder()
        return try? records.map { try Self.loggedEvent($0, decoder) }
    }

    /// A record read from the ring as the event it holds.
    static func loggedEvent(_ record: RingFile.Record, _ decoder: JSONDecoder) throws -> LoggedEvent {
        do {
            let event = try SessionEvent.decode(type: record.type, using: RingPayload(data: record.data, decoder: decoder))
            return LoggedEvent(
                sequence: record.sequence, sessionId: record.sessionId,
                timestamp: Date(timeIntervalSince1970: Double(record.timestampMs) / 1000), event: event)
        } catch {
            throw EventLogError.corruptRecord(sequence: record.sequence, reason: "\(error)")
        }
    }

    /// Every retained event after `sequence`, in order (startup: the tail the projection lacks).
    public func events(after sequence: UInt64) throws -> [LoggedEvent] {
        let records: [RingFile.Record] = state.withLock { _ in
            var result: [RingFile.Record] = []
            var index = file.slots.firstIndex(after: sequence)
            while index < file.slots.count {
                if let record = file.read(file.slots[index]) { result.append(record) }
                index += 1
            }
            return result
        }
        let decoder = JSONDecoder()
        return try records.map { try Self.loggedEvent($0, decoder) }
    }

    /// The oldest retained slot that is young enough to serve. A record stamped in the future
    /// (the clock went backwards) counts as new: nothing is hidden because of a clock jump back.
    private func servableOldest(_ state: State) -> RingFile.Slot? {
        let cutoff = Int64((options.now().timeIntervalSince1970 - options.retention) * 1000)
        let slots = file.slots
        guard !slots.isEmpty else { return nil }
        // Timestamps are non-decreasing along the ring, so binary search.
        var low = 0
        var high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if slots[mid].timestampMs < cutoff { low = mid + 1 } else { high = mid }
        }
        return low < slots.count ? slots[low] : nil
    }

    public func reach() -> LogReach {
        state.withLock { state in
            let oldest = servableOldest(state)
            return LogReach(
                oldestSequence: oldest?.sequence,
                oldestTimestamp: oldest.map { Date(timeIntervalSince1970: Double($0.timestampMs) / 1000) },
                newestSequence: state.nextSequence - 1,
                retainedEvents: file.slots.count,
                limitedByCapacity: state.evictedYoungerThanRetention, capacityBytes: capacity)
        }
    }
}

extension RingFile {
    /// Whether the record in `slot` belongs to the session (compares bytes in place).
    func recordBelongs(_ slot: Slot, to session: [UInt8]) -> Bool {
        withDataRegion { region in
            let length = Int(region[slot.offset + 5])
            guard length == session.count else { return false }
            for i in 0..<length where region[slot.offset + Self.recordHeaderSize + i] != session[i] { return false }
            return true
        }
    }
}

private struct RingPayload: PayloadDecoder {
    let data: [UInt8]
    let decoder: JSONDecoder
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self, from: Data(data)) }
}
