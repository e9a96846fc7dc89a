import Foundation

/// Text the room writes (words for a cloud, open answers): how it is cleaned, counted and
/// checked against the blocklist.
public enum WrittenText {
    /// Trimmed, with every run of inner whitespace made one space: what is stored and shown.
    public static func tidy(_ raw: String) -> String {
        raw.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// The key a word is counted under: Unicode NFKC, tidied, case-folded (so "Café", "CAFÉ"
    /// and "ｃａｆé" are one word, and "Straße" is "strasse").
    public static func key(_ raw: String) -> String {
        let compatible = tidy(raw.precomposedStringWithCompatibilityMapping)
        return compatible.folding(options: [.caseInsensitive], locale: nil).precomposedStringWithCompatibilityMapping
    }

    /// Control characters (other than whitespace, which `tidy` removes) have no place in a word or
    /// an answer on a big screen; they would also inflate results on the wire.
    static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// Bytes `text` takes as a JSON string (with its quotes), counted the way the encoder
    /// escapes: this is what keeps results under `ResultsBudget`.
    static func jsonBytes(_ text: String) -> Int {
        var n = 2
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22, 0x5C, 0x2F: n += 2
            case 0..<0x20: n += 6
            default: n += String(scalar).utf8.count
            }
        }
        return n
    }
}

/// Words the venue never wants on its screens (the `blocklist` setting: a file, one word or
/// phrase per line). A match is accepted from the phone — the writer is not told — counted, and
/// never shown to the room; the presenter sees it marked.
public struct Blocklist: Sendable, Equatable {
    private var keys: Set<String> = []

    public init() {}

    /// One entry per line; blank lines and lines starting with `#` are ignored.
    public init(lines: some Sequence<Substring>) {
        for line in lines {
            let key = WrittenText.key(String(line))
            if !key.isEmpty, !key.hasPrefix("#") { keys.insert(key) }
        }
    }

    public var count: Int { keys.count }

    /// True when the text, or any run of its words, is on the list: "you idiot" matches "idiot".
    public func matches(_ text: String) -> Bool {
        guard !keys.isEmpty else { return false }
        let key = WrittenText.key(text)
        if keys.contains(key) { return true }
        let words = key.split { !$0.isLetter && !$0.isNumber && $0 != "'" }.map(String.init)
        for start in words.indices {
            var phrase = ""
            for end in start..<min(words.count, start + 4) {
                phrase += (end == start ? "" : " ") + words[end]
                if keys.contains(phrase) { return true }
            }
        }
        return false
    }
}

/// How many bytes of words or answers one results payload may carry. A `poll.results` event
/// must stay within 16 KiB whatever the room writes; the envelope and the other fields take
/// well under 1 KiB, so the lists get the rest, and are cut (least frequent words, oldest
/// answers) once it is spent.
public enum ResultsBudget {
    public static let maxEventBytes = 16 * 1024
    static let entryBytes = 15 * 1024
    /// The most words and answers results list, within the byte budget.
    public static let maxWords = 100
    public static let maxAnswers = 50
    /// Per-entry JSON around the text: `{"text":,"count":12345,"hidden":true,"blocked":true},`
    static let wordOverhead = 56
    /// `{"answerId":"…","text":,"hidden":true,"pending":true,"blocked":true},`
    static let answerOverhead = 80
}
