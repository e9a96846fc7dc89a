import Foundation

/// The committed events a ring holds after some sequence, read from outside the log that writes
/// it (a backup of a running box reads the server's ring from another process or thread).
public struct RingTail: Sendable {
    /// Events after the requested sequence, contiguous and in order.
    public let events: [LoggedEvent]
    /// False when the ring no longer holds the event right after the requested sequence (the
    /// writer moved on and overwrote it): the caller must start again from a newer point.
    public let complete: Bool
}

extension RingEventLog {
    /// Reads the events after `sequence` from the ring file at `path` without taking part in
    /// its writing: the file is mapped read-only and scanned as recovery scans it. A record the
    /// writer is appending right now fails its CRC and is simply not there yet; every record
    /// copied out is checked again afterwards, so one overwritten during the copy is dropped.
    /// What comes back is a prefix of the log: the events from `sequence + 1` up to the first
    /// one missing.
    ///
    /// The writer only overwrites events the projection already holds, so the events after a
    /// projection's `projected_through` stay in place while they are read.
    public static func committedTail(ringAt path: String, after sequence: UInt64) throws -> RingTail {
        guard FileManager.default.fileExists(atPath: path) else { return RingTail(events: [], complete: true) }
        let file = try RingFile.openExisting(path: path, writable: false)
        file.recover()
        var records: [RingFile.Record] = []
        var index = file.slots.firstIndex(after: sequence)
        var expected = sequence + 1
        while index < file.slots.count {
            let slot = file.slots[index]
            guard slot.sequence == expected, let record = file.read(slot),
                file.validSlot(at: slot.offset)?.sequence == slot.sequence
            else { break }
            records.append(record)
            expected += 1
            index += 1
        }
        // Complete only when the run reaches the newest record the scan found (or nothing after
        // `sequence` was there): a run cut short — the writer lapped the scan and overwrote a
        // record in the middle — would leave out committed events after the cut.
        let newest = file.slots.count > 0 ? file.slots[file.slots.count - 1].sequence : 0
        let complete = newest <= sequence || records.last?.sequence == newest
        let decoder = JSONDecoder()
        return RingTail(events: try records.map { try loggedEvent($0, decoder) }, complete: complete)
    }
}
