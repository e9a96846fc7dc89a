import Crypto
import Foundation
import TallyDomain
import _CryptoExtras

/// What a verified token lets its bearer do.
public enum Grant: Equatable, Sendable {
    /// Venue staff: creates sessions, and may act as presenter of any session.
    case `operator`
    case presenter(SessionID)
    case display(SessionID)
    case participant(SessionID, ParticipantID)
}

/// Mints and verifies bearer tokens.
///
/// A token is `<kind>.<fields>.<mac>` where mac = HMAC-SHA256(appliance secret, "<kind>.<fields>"),
/// 256 bits, compared in constant time. Nothing is stored per token: a restart keeps everyone
/// signed in, and a token cannot be forged without the secret kept in the data directory.
public struct Credentials: Sendable {
    private let secret: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: secret) }
    /// How long an operator sign-in lasts.
    public var operatorTokenLifetime: TimeInterval = 12 * 3600
    static let maxTokenLength = 256

    public init(secret: [UInt8]) {
        self.secret = secret
    }

    public func token(for grant: Grant, now: Date = Date()) -> String {
        let body: String
        switch grant {
        case .operator: body = "op.\(Int(now.timeIntervalSince1970 + operatorTokenLifetime))"
        case .presenter(let s): body = "pr.\(s)"
        case .display(let s): body = "di.\(s)"
        case .participant(let s, let p): body = "pa.\(s).\(p)"
        }
        let mac = HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: key)
        return body + "." + Base64URL.encode(Array(mac))
    }

    /// The grant a token carries, or nil when it is malformed, forged or expired.
    public func verify(_ token: String, now: Date = Date()) -> Grant? {
        guard token.utf8.count <= Self.maxTokenLength, let dot = token.lastIndex(of: ".") else { return nil }
        let body = token[..<dot]
        guard let mac = Base64URL.decode(token[token.index(after: dot)...]), mac.count == 32,
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(body.utf8), using: key)
        else { return nil }
        let fields = body.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        switch (fields.first, fields.count) {
        case ("op", 2):
            guard let expiry = Int(fields[1]), Double(expiry) > now.timeIntervalSince1970 else { return nil }
            return .operator
        case ("pr", 2): return .presenter(fields[1])
        case ("di", 2): return .display(fields[1])
        case ("pa", 3): return .participant(fields[1], fields[2])
        default: return nil
        }
    }
}

/// The operator password, stored only as a salted PBKDF2-SHA256 hash.
public struct PasswordHash: Sendable, Equatable {
    static let rounds = 210_000
    public let encoded: String

    public init?(encoded: String) {
        let parts = encoded.split(separator: "$")
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", Int(parts[1]) != nil,
            Base64URL.decode(parts[2]) != nil, Base64URL.decode(parts[3]) != nil
        else { return nil }
        self.encoded = encoded
    }

    /// Hashes a new password with a fresh random salt.
    public static func make(password: String) throws -> PasswordHash {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        let derived = try derive(password, salt: salt, rounds: rounds)
        return PasswordHash(encoded: "pbkdf2-sha256$\(rounds)$\(Base64URL.encode(salt))$\(Base64URL.encode(derived))")!
    }

    public func matches(_ password: String) -> Bool {
        let parts = encoded.split(separator: "$")
        guard let rounds = Int(parts[1]), let salt = Base64URL.decode(parts[2]), let expected = Base64URL.decode(parts[3]),
            let derived = try? Self.derive(password, salt: salt, rounds: rounds)
        else { return false }
        // Constant-time comparison: an attacker on the Wi-Fi learns nothing from response timing.
        var difference: UInt8 = derived.count == expected.count ? 0 : 1
        for (a, b) in zip(derived, expected) { difference |= a ^ b }
        return difference == 0
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}

/// Unpadded base64url (RFC 4648 §5), on bytes: it runs for every token on every request, so
/// no Foundation string rewriting.
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let n = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            if i + 1 < bytes.count { out.append(alphabet[Int(n >> 6 & 63)]) }
            if i + 2 < bytes.count { out.append(alphabet[Int(n & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count <= 512, utf8.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in utf8 {
            let value = values[Int(byte)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero (a canonical encoding).
        guard accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}
