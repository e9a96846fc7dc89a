import Foundation
import NIOCore
import Synchronization
import TallyDomain

/// Token buckets keyed by who is asking (a participant, an IP address).
///
/// Sized for a real room: 2,000 phones behind one NAT'd access point share an IP, so per-IP
/// budgets are hall-sized; per-participant budgets are what one thumb can do.
final class RateLimiter: Sendable {
    struct Rule: Sendable {
        /// Tokens added per second.
        var rate: Double
        /// Bucket size: how much may happen at once.
        var burst: Double
    }

    private let rule: Rule
    private let enabled: Bool
    private let buckets = Mutex<[String: (tokens: Double, at: ContinuousClock.Instant)]>([:])

    init(_ rule: Rule, enabled: Bool = true) {
        self.rule = rule
        self.enabled = enabled
    }

    /// Takes a token for `key`; nil if allowed, else the seconds until one is available.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard enabled else { return nil }
        return buckets.withLock { buckets in
            if buckets.count > 50_000 { buckets.removeAll(keepingCapacity: true) }  // bound memory under a flood
            var bucket = buckets[key] ?? (rule.burst, now)
            let elapsed =
                Double(bucket.at.duration(to: now).components.seconds) + Double(bucket.at.duration(to: now).components.attoseconds) / 1e18
            bucket.tokens = min(rule.burst, bucket.tokens + elapsed * rule.rate)
            bucket.at = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else { return max(1, Int(((1 - bucket.tokens) / rule.rate).rounded(.up))) }
            bucket.tokens -= 1
            return nil
        }
    }
}

/// Typed join codes that named no session, per address and for the whole appliance.
///
/// Per address: failures decay by one every 30 s; from the 10th outstanding failure on, the
/// address waits 2 s, doubling with each further failure up to 5 minutes. A right code clears
/// nothing (else 9 wrong + 1 right, repeated, would guess forever).
///
/// For the appliance: wrong codes draw on one budget whose rate is set so that finding *some*
/// live session's code by brute force takes, in expectation, more than a year:
/// 30⁶ codes / (active sessions × 1.25 × one year) per second (README, "Threat model"). When it
/// is spent, every typed code waits until it refills (any address: an attacker may hold many);
/// join links carry a key and never wait on it, so the room still joins by scanning.
final class GuessLockout: Sendable {
    let allowed: Int
    static let decay: Duration = .seconds(30)
    static let codeSpace = pow(Double(JoinCode.alphabet.count), Double(JoinCode.length))
    static let year = 365.25 * 24 * 3600.0
    static let globalBurst = 50.0
    private let state = Mutex<State>(State())

    private struct Record {
        /// Outstanding failures; one is forgiven per `decay` elapsed since `since`.
        var failures = 0
        var since: ContinuousClock.Instant
        var until: ContinuousClock.Instant?

        mutating func decay(now: ContinuousClock.Instant) {
            let steps = Int(seconds(since.duration(to: now)) / seconds(GuessLockout.decay))
            guard steps > 0 else { return }
            failures = max(0, failures - steps)
            since = since.advanced(by: GuessLockout.decay * steps)
        }
    }

    private struct State {
        var records: [String: Record] = [:]
        var globalTokens = GuessLockout.globalBurst
        var globalAt: ContinuousClock.Instant?
    }

    init(allowed: Int = 10) { self.allowed = allowed }

    /// Wrong guesses the whole appliance may absorb per second with `activeSessions` live.
    static func globalRate(activeSessions: Int) -> Double {
        codeSpace / (Double(max(1, activeSessions)) * 1.25 * year)
    }

    /// Seconds to wait, if this address may not guess now.
    func wait(_ ip: String, activeSessions: Int, now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { state in
            refill(&state, activeSessions: activeSessions, now: now)
            if var record = state.records[ip] {
                record.decay(now: now)
                state.records[ip] = record
                if let until = record.until, until > now { return max(1, Int(seconds(now.duration(to: until)).rounded(.up))) }
            }
            // Spent: every typed guess waits, from any address — else an attacker with many
            // addresses would guess past the bound. Join links (the QR code) are not guesses.
            if state.globalTokens < 1 {
                let rate = Self.globalRate(activeSessions: activeSessions)
                return max(1, min(300, Int(((1 - state.globalTokens) / rate).rounded(.up))))
            }
            return nil
        }
    }

    func failed(_ ip: String, activeSessions: Int, now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            refill(&state, activeSessions: activeSessions, now: now)
            state.globalTokens = max(0, state.globalTokens - 1)
            if state.records.count > 50_000 { state.records.removeAll(keepingCapacity: true) }
            var record = state.records[ip] ?? Record(since: now)
            record.decay(now: now)
            if record.failures == 0 { record.since = now }
            record.failures += 1
            if record.failures >= allowed {
                let exponent = min(record.failures - allowed, 8)
                record.until = now.advanced(by: .seconds(min(300, 2 << exponent)))
            }
            state.records[ip] = record
        }
    }

    private func refill(_ state: inout State, activeSessions: Int, now: ContinuousClock.Instant) {
        if let at = state.globalAt {
            state.globalTokens = min(
                Self.globalBurst, state.globalTokens + seconds(at.duration(to: now)) * Self.globalRate(activeSessions: activeSessions))
        }
        state.globalAt = now
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// How participants reach the box, which decides what one address may do.
///
/// `shared`: many phones behind one NAT'd access point share an address, so per-address
/// budgets are hall-sized. `flat`: every phone has its own address (the standalone Wi-Fi
/// example), so one address creates only a few participants a minute and holds few connections.
public enum NetworkMode: String, Sendable, CaseIterable {
    case shared
    case flat
}

/// The limits of one appliance, shared by the routes. `enabled: false` (`rate-limits = no`)
/// is for benchmarks on loopback; the wrong-join-code lockout stays on regardless.
struct Limits: Sendable {
    /// Votes one participant may cast: 5/s, 20 at once (tapping through options is fine).
    let votesPerParticipant: RateLimiter
    /// Votes from one IP: a hall of 2,000 phones behind one NAT all voting within seconds.
    let votesPerIP: RateLimiter
    /// Questions one participant may ask: 3 a minute (the per-session cap is the domain's).
    let questionsPerParticipant: RateLimiter
    /// Questions from one address: a hall behind one NAT asks far less than it votes; this
    /// keeps one device minting participants from filling the session's question cap.
    let questionsPerIP: RateLimiter
    /// New participants from one IP: in `shared` mode the hall arriving at once; in `flat`
    /// mode `flatJoinsPerMinute` (one phone, a few sessions).
    let joinsPerIP: RateLimiter
    /// Wrong join codes (typed joins, display pairing, join codes on `/events`) from one IP.
    let guesses = GuessLockout(allowed: 10)
    /// Failed operator sign-ins and wrong set-up codes.
    let signIns = SignInThrottle()
    let network: NetworkMode
    /// In a cluster: tells the other instances of a charge they must count too, so an attacker
    /// spreading guesses or joins over the instances gets one budget, not one per instance.
    let shared: (@Sendable (LimitCharge) -> Void)?

    init(
        enabled: Bool = true, network: NetworkMode = .shared, flatJoinsPerMinute: Int = 3,
        shared: (@Sendable (LimitCharge) -> Void)? = nil
    ) {
        self.network = network
        self.shared = shared
        votesPerParticipant = RateLimiter(.init(rate: 5, burst: 20), enabled: enabled)
        votesPerIP = RateLimiter(.init(rate: 2_000, burst: 6_000), enabled: enabled)
        questionsPerParticipant = RateLimiter(.init(rate: 3.0 / 60, burst: 3), enabled: enabled)
        questionsPerIP = RateLimiter(.init(rate: 2, burst: 120), enabled: enabled)
        switch network {
        case .shared: joinsPerIP = RateLimiter(.init(rate: 200, burst: 2_500), enabled: enabled)
        case .flat:
            joinsPerIP = RateLimiter(
                .init(rate: Double(flatJoinsPerMinute) / 60, burst: Double(max(1, flatJoinsPerMinute))), enabled: enabled)
        }
    }

    /// The address a per-address budget is charged to (through a trusted proxy, the client's).
    static func ip(_ context: TallyRequestContext) -> String {
        context.client.address
    }

    /// The session a typed join code names. Refuses an address that is locked out; a malformed
    /// or unknown code counts as a wrong guess; a right one clears nothing.
    func session(joinCode text: String, from ip: String, in venue: Venue) throws -> LiveSession {
        try checkGuesses(from: ip, in: venue)
        guard let code = JoinCode(text) else {
            failedGuess(from: ip, in: venue)
            throw Problem(.badRequest, "a join code is 6 letters and digits, like \"K7QX2M\"")
        }
        guard let session = venue.session(joinCode: code) else {
            failedGuess(from: ip, in: venue)
            throw Problem(.notFound, "no session has the join code \(code)")
        }
        return session
    }

    /// Refuses an address that may not guess now (429 with Retry-After).
    func checkGuesses(from ip: String, in venue: Venue) throws {
        if let wait = guesses.wait(ip, activeSessions: venue.activeSessionCount) {
            throw Self.tooMany(wait, "too many wrong join codes from your network")
        }
    }

    func failedGuess(from ip: String, in venue: Venue) {
        guesses.failed(ip, activeSessions: venue.activeSessionCount)
        shared?(.wrongGuess(ip))
    }

    /// Takes a new participant's token from the address's join budget (nil: allowed).
    func takeJoin(_ ip: String) -> Int? {
        let wait = joinsPerIP.take(ip)
        if wait == nil { shared?(.join(ip)) }
        return wait
    }

    /// Another instance's charge, counted here as if it had happened here.
    func count(_ charge: LimitCharge, in venue: Venue) {
        switch charge {
        case .wrongGuess(let ip): guesses.failed(ip, activeSessions: venue.activeSessionCount)
        case .join(let ip): _ = joinsPerIP.take(ip)
        }
    }

    static func tooMany(_ seconds: Int, _ what: String) -> Problem {
        Problem(.tooManyRequests, "\(what); try again in \(seconds) s", headers: [.retryAfter: "\(seconds)"])
    }
}

/// A charge against a budget that the instances of a cluster share.
enum LimitCharge: Sendable, Equatable {
    case wrongGuess(String)
    case join(String)

    /// `g <address>` / `j <address>` (what travels in the notification).
    var text: String {
        switch self {
        case .wrongGuess(let ip): "g \(ip)"
        case .join(let ip): "j \(ip)"
        }
    }

    init?(kind: Substring, address: String) {
        guard !address.isEmpty, address.utf8.count <= 64, !address.contains(" ") else { return nil }
        switch kind {
        case "g": self = .wrongGuess(address)
        case "j": self = .join(address)
        default: return nil
        }
    }
}
