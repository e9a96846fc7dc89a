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
    /// Operator tokens are signed with their own key, which never leaves the box: the appliance
    /// secret travels in backups (links and QR codes keep working after a restore), and must not
    /// be enough to mint an operator sign-in.
    private let operatorKey: [UInt8]
    /// How long an operator sign-in lasts.
    public var operatorTokenLifetime: TimeInterval = 12 * 3600
    static let maxTokenLength = 256

    /// `operatorKey`: nil for commands that never sign anyone in (`tally export`).
    public init(secret: [UInt8], operatorKey: [UInt8]? = nil) {
        self.secret = secret
        self.operatorKey = operatorKey ?? secret
    }

    private func key(for body: some StringProtocol) -> SymmetricKey {
        SymmetricKey(data: body.hasPrefix("op.") ? operatorKey : secret)
    }

    /// What a token says beyond its grant: when an operator token was issued and its nonce
    /// (for revocation), or which generation of a presenter/display link it belongs to.
    public struct Facts: Sendable, Equatable {
        /// The sign-in epoch an operator token was issued in (bumped by every password change).
        public var epoch: Int64 = 0
        public var nonce = ""
        /// The link generation (presenter and display tokens; 0 until a link is rotated).
        public var generation = 0
    }

    /// `generation`: for presenter and display tokens, the session's current link generation.
    /// Generation 0 keeps the original `pr.<session>` shape, so links issued before rotation
    /// existed still verify.
    /// `epoch`: for operator tokens, the current sign-in epoch (`OperatorSignIns.epoch`).
    public func token(for grant: Grant, generation: Int = 0, epoch: Int64 = 0, now: Date = Date()) -> String {
        let body: String
        switch grant {
        case .operator:
            var rng = SystemRandomNumberGenerator()
            let nonce = IdentifierAlphabet.make(length: 12, using: &rng)
            body = "op.\(epoch).\(Int(now.timeIntervalSince1970 + operatorTokenLifetime)).\(nonce)"
        case .presenter(let s): body = generation == 0 ? "pr.\(s)" : "pr.\(s).\(generation)"
        case .display(let s): body = generation == 0 ? "di.\(s)" : "di.\(s).\(generation)"
        case .participant(let s, let p): body = "pa.\(s).\(p)"
        }
        return sign(body)
    }

    /// HMAC-SHA256 over `body`, appended as unpadded base64url.
    func sign(_ body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: key(for: body))
        return body + "." + Base64URL.encode(Array(mac))
    }

    /// A keyed digest of `label`, truncated to `bytes`, as base64url: unguessable values derived
    /// from the appliance secret (join-link keys, export pseudonyms).
    public func digest(_ label: String, bytes: Int = 16) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(label.utf8), using: key)
        return Base64URL.encode(Array(Array(mac).prefix(bytes)))
    }

    /// Export pseudonyms keyed with the same secret (see `ParticipantPseudonyms`).
    public func pseudonyms(_ scope: ParticipantPseudonyms.Scope) -> ParticipantPseudonyms {
        ParticipantPseudonyms(credentials: self, scope: scope)
    }

    /// The grant a token carries, or nil when it is malformed, forged or expired. Revocation
    /// (password change, logout, link rotation) is checked by `Access`, which knows the state.
    public func verify(_ token: String, now: Date = Date()) -> Grant? {
        inspect(token, now: now)?.grant
    }

    public func inspect(_ token: String, now: Date = Date()) -> (grant: Grant, facts: Facts)? {
        guard token.utf8.count <= Self.maxTokenLength, let dot = token.lastIndex(of: ".") else { return nil }
        let body = token[..<dot]
        guard let mac = Base64URL.decode(token[token.index(after: dot)...]), mac.count == 32,
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(body.utf8), using: key(for: body))
        else { return nil }
        let fields = body.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var facts = Facts()
        switch (fields.first, fields.count) {
        // `op.<expiry>` (before sign-ins could be revoked) is refused: it cannot be signed out.
        case ("op", 4):
            // Never longer than a sign-in lasts from now: a token that claims more was not made here.
            guard let epoch = Int64(fields[1]), let expiry = Int(fields[2]), Double(expiry) > now.timeIntervalSince1970,
                Double(expiry) <= now.timeIntervalSince1970 + operatorTokenLifetime + 60
            else { return nil }
            facts.epoch = epoch
            facts.nonce = fields[3]
            return (.operator, facts)
        case ("pr", 2): return (.presenter(fields[1]), facts)
        case ("di", 2): return (.display(fields[1]), facts)
        case ("pr", 3), ("di", 3):
            guard let generation = Int(fields[2]), generation > 0 else { return nil }
            facts.generation = generation
            return (fields[0] == "pr" ? .presenter(fields[1]) : .display(fields[1]), facts)
        case ("pa", 3): return (.participant(fields[1], fields[2]), facts)
        default: return nil
        }
    }

    /// The expiry (seconds since 1970) of an operator token, for remembering a logout until then.
    public static func operatorExpiry(_ token: String) -> Int? {
        let fields = token.split(separator: ".")
        return fields.count == 5 && fields[0] == "op" ? Int(fields[2]) : nil
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
        return constantTimeEqual(derived, expected)
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}

/// Compares secrets in time that depends only on their lengths: an attacker on the Wi-Fi learns
/// nothing from response timing about how much of a guess was right.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference: UInt8 = a.count == b.count ? 0 : 1
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
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
