import CCRC32C
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The event ring: one preallocated, memory-mapped file of fixed capacity holding the newest
/// events, oldest overwritten first. Not thread-safe: `RingEventLog` serialises access.
///
/// File layout (all integers little-endian):
///
///     header page, 4096 bytes
///       0   magic "TALLYRNG"                     8
///       8   format version (1)                   u32
///       12  header size (4096)                   u32
///       16  capacity of the data region, bytes   u64
///       24  epoch: random id of this ring        16
///       40  created at, ms since 1970            i64
///       48  first sequence written to this ring  u64
///       56  CRC-32C of bytes 0..<56              u32
///     data region, `capacity` bytes, records back to back, each 8-byte aligned:
///       0   CRC-32C of bytes 4..<32 and the payload   u32
///       4   kind: 1 event, 2 wrap (continue at 0)     u8
///       5   session id length                         u8
///       6   event type length                         u16
///       8   payload length                            u32
///       12  reserved (0)                              u32
///       16  sequence                                  u64
///       24  timestamp, ms since 1970                  i64
///       32  payload: session id ‖ event type ‖ JSON data
///
/// Recovery scans the whole data region, keeps every record whose CRC checks, and orders them by
/// sequence; nothing in the header changes after creation, so there is no header to tear.
final class RingFile {
    static let headerSize = 4096
    static let recordHeaderSize = 32
    static let magic: [UInt8] = Array("TALLYRNG".utf8)
    static let version: UInt32 = 1
    static let kindEvent: UInt8 = 1
    static let kindWrap: UInt8 = 2

    /// Smallest and largest rings `--ring-size` accepts.
    static let minimumCapacity = 1 << 20
    static let maximumCapacity = 1 << 36

    struct Header: Equatable {
        var capacity: Int
        var epoch: [UInt8]
        var createdAtMs: Int64
        var firstSequence: UInt64
    }

    /// One record's place in the ring.
    struct Slot: Equatable {
        var offset: Int
        var size: Int
        var sequence: UInt64
        var timestampMs: Int64
    }

    /// A record read back from the ring.
    struct Record: Equatable {
        var sequence: UInt64
        var timestampMs: Int64
        var sessionId: String
        var type: String
        var data: [UInt8]
    }

    enum Failure: Error, CustomStringConvertible {
        case io(String)
        case notARing(String)
        case recordTooLarge(Int)

        var description: String {
            switch self {
            case .io(let m), .notARing(let m): m
            case .recordTooLarge(let n): "an event of \(n) bytes does not fit in the ring"
            }
        }
    }

    let path: String
    let header: Header
    var capacity: Int { header.capacity }
    private let fd: Int32
    private let base: UnsafeMutableRawPointer
    private var data: UnsafeMutableRawPointer { base + Self.headerSize }

    /// Next write position in the data region.
    private(set) var head = 0
    /// Records currently retained, oldest first (a ring buffer of slots).
    private(set) var slots = SlotQueue()
    /// Set when the last write left the ring's region [dirtyStart, head) unsynced.
    private var dirtyStart: Int?
    /// Records with a sequence above this may not be overwritten (the projection lacks them).
    var protectedAfter: UInt64 = .max

    private init(path: String, fd: Int32, base: UnsafeMutableRawPointer, header: Header) {
        self.path = path
        self.fd = fd
        self.base = base
        self.header = header
    }

    deinit {
        munmap(base, Self.headerSize + header.capacity)
        close(fd)
    }

    // MARK: open / create

    /// Opens the ring at `path`, creating (and preallocating) it with `capacity` when absent.
    static func open(path: String, capacity: Int, firstSequence: UInt64, now: Int64) throws -> (RingFile, created: Bool) {
        if FileManager.default.fileExists(atPath: path) {
            return (try openExisting(path: path), false)
        }
        return (try create(path: path, capacity: capacity, firstSequence: firstSequence, now: now), true)
    }

    static func create(path: String, capacity: Int, firstSequence: UInt64, now: Int64) throws -> RingFile {
        precondition(capacity % 8 == 0)
        let temporary = path + ".new"
        unlink(temporary)
        let fd = Glibc.open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure.io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let total = headerSize + capacity
        // Really allocate every block now. A sparse file would let a later write into a hole hit
        // a full disk, and a store into a mapped page that cannot be allocated is SIGBUS.
        let rc = posix_fallocate(fd, 0, off_t(total))
        guard rc == 0 else {
            close(fd)
            unlink(temporary)
            if rc == ENOSPC {
                throw Failure.io(
                    "not enough free disk space for a \(formatBytes(capacity)) event ring at \(path); free some space or choose a smaller --ring-size"
                )
            }
            throw Failure.io("cannot allocate \(formatBytes(capacity)) for \(path): \(String(cString: strerror(rc)))")
        }
        var epoch = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<16 { epoch[i] = UInt8.random(in: .min ... .max, using: &rng) }
        let header = Header(capacity: capacity, epoch: epoch, createdAtMs: now, firstSequence: firstSequence)
        var page = [UInt8](repeating: 0, count: headerSize)
        encode(header, into: &page)
        let written = page.withUnsafeBytes { pwrite(fd, $0.baseAddress, headerSize, 0) }
        guard written == headerSize, fsync(fd) == 0 else {
            close(fd)
            unlink(temporary)
            throw Failure.io("cannot write the ring header at \(temporary): \(String(cString: strerror(errno)))")
        }
        close(fd)
        // Publish the ring under its real name only once it is complete.
        guard rename(temporary, path) == 0 else { throw Failure.io("cannot rename \(temporary): \(String(cString: strerror(errno)))") }
        let dir = Glibc.open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
        return try openExisting(path: path)
    }

    /// `writable: false` maps the ring read-only, for reading a ring another process writes
    /// (a backup of a running box): a stray store then faults instead of corrupting it.
    static func openExisting(path: String, writable: Bool = true) throws -> RingFile {
        let fd = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        var page = [UInt8](repeating: 0, count: headerSize)
        let got = page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerSize, 0) }
        guard got == headerSize, let header = decode(page) else {
            close(fd)
            // Not damage: a newer Tally's ring. Refused untouched, never "moved away" or replaced.
            if let newer = newerVersion(page) {
                throw NewerDataFormat(path: path, found: "format version \(newer)", known: "format version \(version)")
            }
            throw Failure.notARing("\(path) is not a Tally event ring (bad header); move it away to start a new one")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) >= headerSize + header.capacity else {
            close(fd)
            throw Failure.notARing("\(path) is shorter than its header says; move it away to start a new one")
        }
        let total = headerSize + header.capacity
        guard let base = mmap(nil, total, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            close(fd)
            throw Failure.io("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        return RingFile(path: path, fd: fd, base: base, header: header)
    }

    static func encode(_ header: Header, into page: inout [UInt8]) {
        page.replaceSubrange(0..<8, with: magic)
        page.withUnsafeMutableBytes { p in
            p.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(headerSize).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: UInt64(header.capacity).littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        page.replaceSubrange(24..<40, with: header.epoch)
        page.withUnsafeMutableBytes { p in
            p.storeBytes(of: header.createdAtMs.littleEndian, toByteOffset: 40, as: Int64.self)
            p.storeBytes(of: header.firstSequence.littleEndian, toByteOffset: 48, as: UInt64.self)
            let crc = tally_crc32c(0, p.baseAddress, 56)
            p.storeBytes(of: crc.littleEndian, toByteOffset: 56, as: UInt32.self)
        }
    }

    /// The version of a ring a newer Tally wrote, or nil. The magic and the version field are
    /// the part of the header every version keeps, so a newer ring is told apart from a damaged
    /// one even if the rest of its header is laid out differently.
    static func newerVersion(_ page: [UInt8]) -> UInt32? {
        guard page.count >= 12, Array(page[0..<8]) == magic else { return nil }
        let found = page.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        return found > version ? found : nil
    }

    /// Throws `NewerDataFormat` when the ring at `path` was written by a newer Tally, having
    /// only read its header: checked before anything in the data directory is opened for writing.
    static func refuseNewerFormat(at path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }  // absent or unreadable: opening it proper says which
        defer { close(fd) }
        var page = [UInt8](repeating: 0, count: 12)
        guard page.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 12, 0) }) == 12, let newer = newerVersion(page) else { return }
        throw NewerDataFormat(path: path, found: "format version \(newer)", known: "format version \(version)")
    }

    static func decode(_ page: [UInt8]) -> Header? {
        guard page.count >= headerSize, Array(page[0..<8]) == magic else { return nil }
        return page.withUnsafeBytes { p -> Header? in
            let crc = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 56, as: UInt32.self))
            guard crc == tally_crc32c(0, p.baseAddress, 56),
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == version,
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) == UInt32(headerSize)
            else { return nil }
            let capacity = Int(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
            guard capacity >= minimumCapacity, capacity <= maximumCapacity, capacity % 8 == 0 else { return nil }
            return Header(
                capacity: capacity, epoch: Array(page[24..<40]),
                createdAtMs: Int64(littleEndian: p.loadUnaligned(fromByteOffset: 40, as: Int64.self)),
                firstSequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt64.self)))
        }
    }

    // MARK: recovery

    /// Scans the data region and rebuilds `slots` and `head`. Keeps every record whose CRC
    /// checks; resynchronises after a bad one (a corrupt byte costs only the records it
    /// touches); stops the log at the newest valid record, so a torn last write is overwritten.
    /// Returns the sequences missing between retained records (gaps from corruption).
    @discardableResult
    func recover() -> [ClosedRange<UInt64>] {
        var found: [Slot] = []
        var position = 0
        while position + Self.recordHeaderSize <= capacity {
            if let slot = validSlot(at: position) {
                if readKind(at: position) == Self.kindWrap { break }
                found.append(slot)
                position += slot.size
            } else {
                position += 8
            }
        }
        slots = SlotQueue()
        guard let newest = found.max(by: { $0.sequence < $1.sequence }) else {
            head = 0
            return []
        }
        head = (newest.offset + newest.size) % capacity
        // Logical order starts at the first record after the head (the oldest retained), wraps at
        // the end of the region, and finishes with the newest. Anything out of that order is a
        // remnant of an older lap.
        let start = found.firstIndex(where: { $0.offset >= newest.offset + newest.size }) ?? found.count
        var gaps: [ClosedRange<UInt64>] = []
        var last: UInt64?
        for slot in found[start...] + found[..<start] {
            if let l = last {
                guard slot.sequence > l else { continue }
                if slot.sequence > l + 1 { gaps.append((l + 1)...(slot.sequence - 1)) }
            }
            slots.append(slot)
            last = slot.sequence
        }
        dirtyStart = nil
        return gaps
    }

    private func readKind(at offset: Int) -> UInt8 {
        data.load(fromByteOffset: offset + 4, as: UInt8.self)
    }

    /// The record at `offset` if its framing is plausible and its CRC checks.
    func validSlot(at offset: Int) -> Slot? {
        guard offset % 8 == 0, offset + Self.recordHeaderSize <= capacity else { return nil }
        let p = data + offset
        let kind = p.load(fromByteOffset: 4, as: UInt8.self)
        guard kind == Self.kindEvent || kind == Self.kindWrap else { return nil }
        let length = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let size = Self.align(Self.recordHeaderSize + length)
        guard offset + size <= capacity else { return nil }
        if kind == Self.kindEvent {
            let sessionLength = Int(p.load(fromByteOffset: 5, as: UInt8.self))
            let typeLength = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
            guard sessionLength > 0, typeLength > 0, sessionLength + typeLength <= length else { return nil }
        }
        let crc = UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))
        guard crc == tally_crc32c(0, p + 4, Self.recordHeaderSize - 4 + length) else { return nil }
        return Slot(
            offset: offset, size: kind == Self.kindWrap ? capacity - offset : size,
            sequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            timestampMs: Int64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: Int64.self)))
    }

    // MARK: append

    static func align(_ n: Int) -> Int { (n + 7) & ~7 }

    static func recordSize(sessionId: String, type: String, dataCount: Int) -> Int {
        align(recordHeaderSize + sessionId.utf8.count + type.utf8.count + dataCount)
    }

    /// Largest record the ring takes: a quarter of its capacity, so wrapping always has room.
    var maximumRecordSize: Int { capacity / 4 }

    enum AppendRefusal: Error {
        /// Writing would overwrite events the projection does not hold yet.
        case wouldOverwriteUnprojected
    }

    /// Checks that records of these sizes can be written without overwriting a protected
    /// record, without changing anything.
    func canAppend(sizes: [Int]) -> Bool {
        // The same walk as `append`, on copies: which retained records would be overwritten?
        var h = head
        var cursor = slots.makeCursor()
        for size in sizes {
            if size > maximumRecordSize { return false }
            if h + size > capacity {
                while let oldest = cursor.peek(), oldest.offset >= h {
                    if oldest.sequence > protectedAfter { return false }
                    cursor.advance()
                }
                h = 0
            }
            while let oldest = cursor.peek(), oldest.offset >= h, oldest.offset < h + size {
                if oldest.sequence > protectedAfter { return false }
                cursor.advance()
            }
            h += size
            if h == capacity { h = 0 }
        }
        return true
    }

    /// Writes one event record at the head, overwriting the oldest records in its way.
    func append(sequence: UInt64, timestampMs: Int64, sessionId: String, type: String, data payload: UnsafeRawBufferPointer) {
        var sessionId = sessionId
        var type = type
        sessionId.withUTF8 { session in
            type.withUTF8 { typeBytes in
                append(
                    sequence: sequence, timestampMs: timestampMs, session: UnsafeRawBufferPointer(session),
                    typeBytes: UnsafeRawBufferPointer(typeBytes), payload: payload)
            }
        }
    }

    private func append(
        sequence: UInt64, timestampMs: Int64, session: UnsafeRawBufferPointer, typeBytes: UnsafeRawBufferPointer,
        payload: UnsafeRawBufferPointer
    ) {
        let length = session.count + typeBytes.count + payload.count
        let size = Self.align(Self.recordHeaderSize + length)
        precondition(size <= maximumRecordSize && session.count <= 255 && typeBytes.count <= 65535)
        if head + size > capacity {
            // Not enough room before the end: mark the rest as skipped and continue at 0.
            if capacity - head >= Self.recordHeaderSize {
                evict(from: head, to: capacity)
                writeWrap(at: head, nextSequence: sequence, timestampMs: timestampMs)
            } else {
                evict(from: head, to: capacity)
            }
            markDirty(from: head, to: capacity)
            head = 0
        }
        evict(from: head, to: head + size)
        let p = data + head
        p.storeBytes(of: Self.kindEvent, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(session.count), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(typeBytes.count).littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: sequence.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: timestampMs.littleEndian, toByteOffset: 24, as: Int64.self)
        var q = p + Self.recordHeaderSize
        q.copyMemory(from: session.baseAddress!, byteCount: session.count)
        q += session.count
        q.copyMemory(from: typeBytes.baseAddress!, byteCount: typeBytes.count)
        q += typeBytes.count
        if payload.count > 0 { q.copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        let padding = size - Self.recordHeaderSize - length
        if padding > 0 { (q + payload.count).initializeMemory(as: UInt8.self, repeating: 0, count: padding) }
        // The CRC goes in last: a record torn by a crash mid-copy fails its check.
        let crc = tally_crc32c(0, p + 4, Self.recordHeaderSize - 4 + length)
        p.storeBytes(of: crc.littleEndian, as: UInt32.self)
        slots.append(Slot(offset: head, size: size, sequence: sequence, timestampMs: timestampMs))
        markDirty(from: head, to: head + size)
        head += size
        if head == capacity { head = 0 }
    }

    private func writeWrap(at offset: Int, nextSequence: UInt64, timestampMs: Int64) {
        let p = data + offset
        p.storeBytes(of: Self.kindWrap, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: nextSequence.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: timestampMs.littleEndian, toByteOffset: 24, as: Int64.self)
        let crc = tally_crc32c(0, p + 4, Self.recordHeaderSize - 4)
        p.storeBytes(of: crc.littleEndian, as: UInt32.self)
    }

    /// Drops the retained records that start inside [from, to): they are about to be overwritten.
    private func evict(from: Int, to: Int) {
        while let oldest = slots.first, oldest.offset >= from, oldest.offset < to {
            slots.removeFirst()
        }
    }

    private func markDirty(from: Int, to: Int) {
        if dirtyStart == nil { dirtyStart = from }
        _ = to
    }

    // MARK: sync and read

    /// Flushes everything written since the last sync to stable storage (msync), and returns
    /// whether there was anything to flush.
    @discardableResult
    func sync() throws -> Bool {
        guard let start = dirtyStart else { return false }
        dirtyStart = nil
        let end = head
        if end > start {
            try msyncRange(start, end)
        } else {
            try msyncRange(start, capacity)
            if end > 0 { try msyncRange(0, end) }
        }
        return true
    }

    /// The unsynced range, taken so the sync can run outside the lock; `syncRanges` does the work.
    func takeDirtyRanges() -> [(Int, Int)] {
        guard let start = dirtyStart else { return [] }
        dirtyStart = nil
        let end = head
        if end > start { return [(start, end)] }
        return end > 0 ? [(start, capacity), (0, end)] : [(start, capacity)]
    }

    func syncRanges(_ ranges: [(Int, Int)]) throws {
        for (a, b) in ranges { try msyncRange(a, b) }
    }

    private func msyncRange(_ from: Int, _ to: Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let absolute = Self.headerSize + from
        let alignedStart = absolute / page * page
        let length = Self.headerSize + to - alignedStart
        guard msync(base + alignedStart, length, MS_SYNC) == 0 else {
            throw Failure.io("msync of the event ring failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads the record in `slot` (copying it out of the mapping).
    func read(_ slot: Slot) -> Record? {
        guard slot.offset + Self.recordHeaderSize <= capacity else { return nil }
        let p = data + slot.offset
        let sessionLength = Int(p.load(fromByteOffset: 5, as: UInt8.self))
        let typeLength = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        let length = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard sessionLength + typeLength <= length, slot.offset + Self.recordHeaderSize + length <= capacity else { return nil }
        let payload = UnsafeRawBufferPointer(start: p + Self.recordHeaderSize, count: length)
        return Record(
            sequence: slot.sequence, timestampMs: slot.timestampMs,
            sessionId: String(decoding: payload[0..<sessionLength], as: UTF8.self),
            type: String(decoding: payload[sessionLength..<(sessionLength + typeLength)], as: UTF8.self),
            data: Array(payload[(sessionLength + typeLength)...]))
    }

    /// Only for tests: the bytes of the data region.
    func withDataRegion<T>(_ body: (UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeMutableRawBufferPointer(start: data, count: capacity))
    }
}

/// Retained slots, oldest first: an array with a moving start, compacted now and then, so
/// eviction is O(1) and lookup by sequence is a binary search.
struct SlotQueue {
    private var storage: [RingFile.Slot] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { count == 0 }
    var first: RingFile.Slot? { start < storage.count ? storage[start] : nil }
    var last: RingFile.Slot? { start < storage.count ? storage.last : nil }

    mutating func append(_ slot: RingFile.Slot) { storage.append(slot) }

    mutating func removeFirst() {
        start += 1
        if start > 4096 && start * 2 > storage.count {
            storage.removeFirst(start)
            start = 0
        }
    }

    /// Index (into the retained slots) of the first slot with sequence > `sequence`.
    func firstIndex(after sequence: UInt64) -> Int {
        var low = start
        var high = storage.count
        while low < high {
            let mid = (low + high) / 2
            if storage[mid].sequence <= sequence { low = mid + 1 } else { high = mid }
        }
        return low - start
    }

    subscript(i: Int) -> RingFile.Slot { storage[start + i] }

    struct Cursor {
        fileprivate let queue: SlotQueue
        fileprivate var index: Int
        func peek() -> RingFile.Slot? { index < queue.count ? queue[index] : nil }
        mutating func advance() { index += 1 }
    }

    func makeCursor() -> Cursor { Cursor(queue: self, index: 0) }
}

/// "1 GiB", "256 MiB", … for messages and logs.
public func formatBytes(_ n: Int) -> String {
    if n >= 1 << 30, n % (1 << 30) == 0 { return "\(n >> 30) GiB" }
    if n >= 1 << 20, n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 10, n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
    return "\(n) bytes"
}
