/// Identifiers are short opaque strings drawn from an unambiguous alphabet, so they are safe
/// in URLs, cookie names and log lines, and easy to read aloud at a venue.
public typealias SessionID = String
public typealias PollID = String
public typealias OptionID = String
public typealias ParticipantID = String
/// One written answer to an open poll (chosen by the caller, like poll ids).
public typealias AnswerID = String

/// Generates the random identifiers the domain needs. The domain never calls a random source
/// itself: the caller passes identifiers into commands, which keeps `decide` deterministic.
public enum IdentifierAlphabet {
    /// Lower-case letters and digits without the look-alikes (0/o, 1/l/i).
    static let lowercase: [Character] = Array("abcdefghjkmnpqrstuvwxyz23456789")

    /// A random identifier of `length` characters from an unambiguous alphabet.
    public static func make(length: Int = 12, using generator: inout some RandomNumberGenerator) -> String {
        var result = ""
        result.reserveCapacity(length)
        for _ in 0..<length {
            result.append(lowercase.randomElement(using: &generator)!)
        }
        return result
    }

    /// True when `value` could have been produced by `make` (used to reject junk early).
    public static func isWellFormed(_ value: String, maxLength: Int = 32) -> Bool {
        !value.isEmpty && value.count <= maxLength && value.allSatisfy { lowercase.contains($0) }
    }
}
