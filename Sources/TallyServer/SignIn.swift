import Foundation
import NIOCore
import NIOPosix
import Synchronization
import TallyDomain
import TallyEventLog

/// The operator password: from the configuration, or set once on first run and stored hashed.
/// The stored hash is read at every sign-in, so `tally reset-password` takes effect at once.
///
/// Hashing (PBKDF2, 210,000 rounds, ~0.1 s of a core) never runs on an event loop: it runs on
/// NIO's blocking pool, at most `maxHashing` at a time (half the cores); a request over that bound is refused
/// with 503 at once rather than queued, so a burst of sign-ins cannot stall votes.
public final class OperatorPassword: Sendable {
    /// The one rule for a new operator password (settings, the API, `tally reset-password`).
    public static let lengths = (minimumCharacters: 8, maximumBytes: 256)

    /// Why `password` cannot be the operator password, or nil.
    public static func problem(with password: String) -> String? {
        guard password.count < lengths.minimumCharacters || password.utf8.count > lengths.maximumBytes else { return nil }
        return "must have \(lengths.minimumCharacters) to \(lengths.maximumBytes) characters"
    }

    private let settings: any SettingsStore
    private let configured: PasswordHash?
    /// One first-run set-up at a time (the store's write may wait, so not a lock held across it).
    private let settingUp = Atomic<Bool>(false)
    private let hashing = Atomic<Int>(0)
    let maxHashing: Int

    /// Half the cores (at least one): hashing never takes the whole box from the room.
    static let defaultMaxHashing = max(1, System.coreCount / 2)

    init(configured: String?, settings: any SettingsStore, maxHashing: Int = OperatorPassword.defaultMaxHashing) throws {
        self.settings = settings
        self.configured = try configured.map { try PasswordHash.make(password: $0) }
        self.maxHashing = maxHashing
    }

    private var stored: PasswordHash? {
        (try? settings.setting("operator_password")).flatMap { $0 }.flatMap(PasswordHash.init(encoded:))
    }

    var isSet: Bool { configured != nil || stored != nil }

    /// Whether the password comes from the configuration (then it cannot be changed here).
    var isConfigured: Bool { configured != nil }

    func matches(_ password: String) async throws -> Bool {
        guard let hash = configured ?? stored else { return false }
        return try await offLoop { hash.matches(password) }
    }

    /// First-run set-up: succeeds only while no password exists.
    func setInitial(_ password: String) async throws -> Bool {
        guard !isSet else { return false }
        let new = try await offLoop { try PasswordHash.make(password: password) }
        guard settingUp.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return false
        }
        defer { settingUp.store(false, ordering: .releasing) }
        guard !isSet else { return false }
        try await settings.setSetting("operator_password", to: new.encoded)
        return true
    }

    /// Replaces the stored password (the caller has checked the current one).
    func change(to password: String) async throws {
        let new = try await offLoop { try PasswordHash.make(password: password) }
        try await settings.setSetting("operator_password", to: new.encoded)
    }

    private func offLoop<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let (exchanged, running) = hashing.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing)
        if !exchanged {
            // Not the first: take a slot only while fewer than `maxHashing` are in flight.
            var current = running
            while true {
                guard current < maxHashing else {
                    throw Problem(
                        .serviceUnavailable, "the appliance is busy checking other sign-ins; retry in a moment", headers: [.retryAfter: "1"]
                    )
                }
                let (done, seen) = hashing.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
                if done { break }
                current = seen
            }
        }
        defer { hashing.subtract(1, ordering: .releasing) }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }
}

/// Which operator tokens are honoured. Every token carries the sign-in epoch it was issued in;
/// a password change (here or by `tally reset-password`) bumps the epoch, and only tokens of the
/// current one are honoured. A counter, not a time: a box without a battery clock may boot with
/// its clock behind a stolen token's issue time, and a sign-in that was hashing the old password
/// while it changed gets the old epoch. A sign-out revokes one token's nonce until that token
/// would have expired anyway.
///
/// Both live in the settings table, so they survive restarts and reach a running server from
/// the command line; they are re-read at most once a second, not per request.
final class OperatorSignIns: Sendable {
    static let epochKey = "operator_epoch"
    static let revokedKey = "operator_revoked"

    private let settings: any SettingsStore
    private let cache = Mutex<Cache>(Cache())

    private struct Cache {
        var epoch: Int64 = 0
        /// nonce → expiry (seconds since 1970).
        var revoked: [String: Int] = [:]
        var readAt: ContinuousClock.Instant?
    }

    init(settings: any SettingsStore) {
        self.settings = settings
    }

    /// The current epoch, read from the settings now (a sign-in stamps its token with the
    /// epoch it read before checking the password).
    var epoch: Int64 {
        Self.storedEpoch(settings)
    }

    static func storedEpoch(_ settings: any SettingsStore) -> Int64 {
        (try? settings.setting(epochKey)).flatMap { $0 }.flatMap { Int64($0) } ?? 0
    }

    func honours(_ facts: Credentials.Facts, now: ContinuousClock.Instant = .now) -> Bool {
        cache.withLock { cache in
            if cache.readAt.map({ $0.duration(to: now) > .seconds(1) }) ?? true { reload(&cache, now: now) }
            return facts.epoch == cache.epoch && cache.revoked[facts.nonce] == nil
        }
    }

    /// Forgets what was read: the next check reads the settings again (another instance of a
    /// cluster changed them).
    func invalidate() {
        cache.withLock { $0.readAt = nil }
    }

    /// Every operator token issued so far stops working.
    func revokeAll() async throws {
        let next = try await bumpEpoch(in: settings)
        cache.withLock { $0.epoch = next }
    }

    /// One token stops working (sign-out).
    func revoke(nonce: String, expiry: Int, now: Date = Date()) async throws {
        let nowSeconds = Int(now.timeIntervalSince1970)
        // Stored first, as one step against the stored list (another instance may be adding its
        // own sign-out at the same moment): acknowledged only once every instance can see it.
        let stored = try await settings.updateSetting(Self.revokedKey) { text in
            var revoked = Self.parseRevoked(text).filter { $0.value > nowSeconds }
            revoked[nonce] = expiry
            return revoked.map { "\($0.key):\($0.value)" }.sorted().joined(separator: ",")
        }
        cache.withLock { $0.revoked.merge(Self.parseRevoked(stored)) { _, new in new } }
    }

    static func parseRevoked(_ text: String?) -> [String: Int] {
        var revoked: [String: Int] = [:]
        for entry in (text ?? "").split(separator: ",") {
            let parts = entry.split(separator: ":")
            if parts.count == 2, let expiry = Int(parts[1]) { revoked[String(parts[0])] = expiry }
        }
        return revoked
    }

    private func reload(_ cache: inout Cache, now: ContinuousClock.Instant) {
        cache.readAt = now
        cache.epoch = Self.storedEpoch(settings)
        if let text = try? settings.setting(Self.revokedKey) {
            var revoked: [String: Int] = [:]
            for entry in text.split(separator: ",") {
                let parts = entry.split(separator: ":")
                if parts.count == 2, let expiry = Int(parts[1]) { revoked[String(parts[0])] = expiry }
            }
            cache.revoked = revoked
        }
    }
}

/// Moves the sign-in epoch on by one; returns the new epoch.
@discardableResult
private func bumpEpoch(in settings: any SettingsStore) async throws -> Int64 {
    // From the stored epoch, not a cached one: two changes at once on two instances end two epochs.
    let next = try await settings.updateSetting(OperatorSignIns.epochKey) { "\((Int64($0 ?? "0") ?? 0) + 1)" }
    return Int64(next) ?? 0
}

/// Failed operator sign-ins (and wrong set-up codes).
///
/// Per address: 5 failures are free, then each further one locks the address out for 2 s,
/// doubling up to 15 minutes; a success clears the address. Globally: at most `globalPerMinute`
/// failures a minute (burst 20); when that is spent, only addresses that have failed recently
/// are refused, so an honest operator signing in from another address is never locked out by
/// an attacker elsewhere.
final class SignInThrottle: Sendable {
    let allowed = 5
    private let globalPerMinute: Double
    private let state = Mutex<State>(State())

    private struct State {
        var addresses: [String: (failures: Int, until: ContinuousClock.Instant?, last: ContinuousClock.Instant)] = [:]
        var globalTokens = 20.0
        var globalAt: ContinuousClock.Instant?
    }

    init(globalPerMinute: Double = 30) {
        self.globalPerMinute = globalPerMinute
    }

    /// Seconds to wait before `address` may try again, if it must.
    func wait(_ address: String, now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { state in
            refill(&state, now: now)
            guard let record = state.addresses[address] else { return nil }
            if let until = record.until, until > now { return max(1, Int(seconds(now.duration(to: until)).rounded(.up))) }
            // Global budget spent: addresses with a failure in the last 15 minutes wait.
            if state.globalTokens < 1, record.last.duration(to: now) < .seconds(900) {
                return max(1, Int(((1 - state.globalTokens) * 60 / globalPerMinute).rounded(.up)))
            }
            return nil
        }
    }

    func failed(_ address: String, now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            refill(&state, now: now)
            state.globalTokens = max(0, state.globalTokens - 1)
            if state.addresses.count > 50_000 { state.addresses.removeAll(keepingCapacity: true) }
            var record = state.addresses[address] ?? (0, nil, now)
            record.failures += 1
            record.last = now
            if record.failures > allowed {
                let exponent = min(record.failures - allowed - 1, 9)
                record.until = now.advanced(by: .seconds(min(900, 2 << exponent)))
            }
            state.addresses[address] = record
        }
    }

    func succeeded(_ address: String) {
        _ = state.withLock { $0.addresses.removeValue(forKey: address) }
    }

    private func refill(_ state: inout State, now: ContinuousClock.Instant) {
        if let at = state.globalAt {
            let elapsed = Double(at.duration(to: now).components.seconds) + Double(at.duration(to: now).components.attoseconds) / 1e18
            state.globalTokens = min(20, state.globalTokens + elapsed * globalPerMinute / 60)
        }
        state.globalAt = now
    }
}

/// The one-time code that first-run set-up needs: printed in the log at start and shown on the
/// box's own screen (the display page opened from the box itself), so only someone who can see
/// the box chooses its operator password. Never shown once a password exists.
struct SetupCode: Sendable {
    let value: String

    static func random() -> SetupCode {
        var rng = SystemRandomNumberGenerator()
        // Eight symbols of the join-code alphabet (no look-alikes): ~39 bits, with the sign-in
        // throttle in front of it.
        let symbols = (0..<8).map { _ in JoinCode.alphabet.randomElement(using: &rng)! }
        return SetupCode(value: String(symbols[0..<4]) + "-" + String(symbols[4...]))
    }

    /// Case-insensitive, ignoring spaces and dashes; constant time in the code's length.
    func matches(_ typed: String) -> Bool {
        constantTimeEqual(Array(value.filter { $0 != "-" }.utf8), Array(typed.uppercased().filter { $0 != "-" && $0 != " " }.utf8))
    }
}

/// Ends every operator sign-in so far, from outside the server (`tally reset-password`): a
/// running server refuses the old tokens within a second and ends their streams within a
/// heartbeat.
public func revokeOperatorSignIns(in settings: any SettingsStore) async throws {
    try await bumpEpoch(in: settings)
}

/// The same, on a data directory's database (its writes do not wait).
public func revokeOperatorSignIns(in projection: SQLiteProjection) throws {
    try projection.setSetting(OperatorSignIns.epochKey, to: "\(OperatorSignIns.storedEpoch(projection) + 1)")
}
