/// The six characters a participant types (or scans) to join a session.
///
/// Drawn from 30 symbols with no look-alikes (no O/0, I/1, L), so a code read off a projector
/// from the back of the room is typed correctly. 30^6 ≈ 729 million codes.
public struct JoinCode: Hashable, Sendable, Codable, CustomStringConvertible {
    public static let alphabet: [Character] = Array("ABCDEFGHJKMNPQRSTUVWXYZ2345678")
    public static let length = 6

    public let value: String

    /// Parses user input: case-insensitive, ignores spaces and dashes people add while typing.
    public init?(_ input: String) {
        let cleaned = input.uppercased().filter { $0 != " " && $0 != "-" }
        guard cleaned.count == Self.length, cleaned.allSatisfy({ Self.alphabet.contains($0) }) else { return nil }
        self.value = cleaned
    }

    /// A fresh random code. Pass a cryptographic generator (`SystemRandomNumberGenerator`) so
    /// codes cannot be predicted from earlier ones.
    public static func random(using generator: inout some RandomNumberGenerator) -> JoinCode {
        var code = ""
        for _ in 0..<length { code.append(alphabet.randomElement(using: &generator)!) }
        return JoinCode(code)!
    }

    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let code = JoinCode(raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a join code"))
        }
        self = code
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
