/// DNS-SD TXT records (RFC 6763 §6) as anyone on the Wi-Fi may send them: the parser takes raw
/// bytes and never traps, whatever arrives — a phone can advertise `_tally._tcp` with anything
/// in its TXT, and `tally discover` is what brings the projector up.
public enum TXTRecord {
    /// A DNS character-string holds at most 255 bytes; anything longer did not come off the wire.
    public static let maximumEntryLength = 255

    /// `key=value` entries → a dictionary, by RFC 6763's rules:
    /// - the key is everything before the first `=`; an entry without `=` is a key with no value
    ///   (read here as the empty string);
    /// - an empty key (`=`, `=x`, or an empty entry) is ignored (§6.4);
    /// - keys are printable US-ASCII (0x20–0x7E) and compared case-insensitively: they are
    ///   returned lowercased; an entry with any other byte in its key is ignored;
    /// - when a key appears more than once, only the first counts (§6.4), even if its value is
    ///   unusable;
    /// - the value is everything after the first `=` (it may contain `=`); a value that is not
    ///   UTF-8 is ignored rather than "repaired", so two different byte strings never read as one
    ///   (an id must compare exactly);
    /// - entries over 255 bytes are ignored.
    public static func parse(_ entries: [[UInt8]]) -> [String: String] {
        var records: [String: String] = [:]
        // Keys already met, whether or not their value was usable: the first occurrence decides.
        var seen: Set<String> = []
        for entry in entries where !entry.isEmpty && entry.count <= maximumEntryLength {
            let separator = entry.firstIndex(of: UInt8(ascii: "=")) ?? entry.endIndex
            let keyBytes = entry[..<separator]
            guard !keyBytes.isEmpty, keyBytes.allSatisfy({ (0x20...0x7E).contains($0) }) else { continue }
            let key = String(decoding: keyBytes, as: UTF8.self).lowercased()
            guard seen.insert(key).inserted else { continue }
            let valueBytes = separator < entry.endIndex ? entry[(separator + 1)...] : entry[entry.endIndex...]
            guard let value = String(validating: valueBytes, as: UTF8.self) else { continue }
            records[key] = value
        }
        return records
    }

    /// The same, for entries already held as strings (tests, configuration).
    public static func parse(_ entries: [String]) -> [String: String] {
        parse(entries.map { Array($0.utf8) })
    }
}
