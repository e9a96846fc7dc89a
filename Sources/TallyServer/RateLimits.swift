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
            let elapsed = Double(bucket.at.duration(to: now).components.seconds) + Double(bucket.at.duration(to: now).components.attoseconds) / 1e18
            bucket.tokens = min(rule.burst, bucket.tokens + elapsed * rule.rate)
            bucket.at = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else { return max(1, Int(((1 - bucket.tokens) / rule.rate).rounded(.up))) }
            bucket.tokens -= 1
            return nil
        }
    }
}

/// Failed join-code guesses per IP: after `allowed` failures the IP waits, 2 s the first time,
/// doubling with each further failure up to 5 minutes. A success clears the record.
final class GuessLockout: Sendable {
    let allowed: Int
    private let records = Mutex<[String: (failures: Int, until: ContinuousClock.Instant?)]>([:])

    init(allowed: Int = 10) { self.allowed = allowed }

    /// Seconds to wait, if this IP is locked out now.
    func wait(_ ip: String, now: ContinuousClock.Instant = .now) -> Int? {
        records.withLock { records in
            guard let until = records[ip]?.until, until > now else { return nil }
            return max(1, Int(now.duration(to: until).components.seconds) + 1)
        }
    }

    func failed(_ ip: String, now: ContinuousClock.Instant = .now) {
        records.withLock { records in
            if records.count > 50_000 { records.removeAll(keepingCapacity: true) }
            var record = records[ip] ?? (0, nil)
            record.failures += 1
            if record.failures >= allowed {
                let exponent = min(record.failures - allowed, 8)
                record.until = now.advanced(by: .seconds(min(300, 2 << exponent)))
            }
            records[ip] = record
        }
    }

    func succeeded(_ ip: String) {
        _ = records.withLock { $0.removeValue(forKey: ip) }
    }
}

/// The limits of one appliance, shared by the routes. `enabled: false` (`rate-limits = no`)
/// is for benchmarks on loopback; the wrong-join-code lockout stays on regardless.
struct Limits: Sendable {
    /// Votes one participant may cast: 5/s, 20 at once (tapping through options is fine).
    let votesPerParticipant: RateLimiter
    /// Votes from one IP: a hall of 2,000 phones behind one NAT all voting within seconds.
    let votesPerIP: RateLimiter
    /// Joins from one IP: the same hall arriving at once.
    let joinsPerIP: RateLimiter
    /// Wrong join codes (join and display pairing) from one IP.
    let guesses = GuessLockout(allowed: 10)

    init(enabled: Bool = true) {
        votesPerParticipant = RateLimiter(.init(rate: 5, burst: 20), enabled: enabled)
        votesPerIP = RateLimiter(.init(rate: 2_000, burst: 6_000), enabled: enabled)
        joinsPerIP = RateLimiter(.init(rate: 200, burst: 2_500), enabled: enabled)
    }

    /// The address a per-address budget is charged to (through a trusted proxy, the client's).
    static func ip(_ context: TallyRequestContext) -> String {
        context.client.address
    }

    /// Refuses an IP that is locked out for guessing join codes.
    func checkGuesses(from ip: String) throws {
        if let wait = guesses.wait(ip) { throw Self.tooMany(wait, "too many wrong join codes from your network") }
    }

    /// The session a typed join code names; a malformed or unknown code counts as a wrong
    /// guess from `ip`, a right one clears its record.
    func session(joinCode text: String, from ip: String, in venue: Venue) throws -> LiveSession {
        guard let code = JoinCode(text) else {
            guesses.failed(ip)
            throw Problem(.badRequest, "a join code is 6 letters and digits, like \"K7QX2M\"")
        }
        guard let session = venue.session(joinCode: code) else {
            guesses.failed(ip)
            throw Problem(.notFound, "no session has the join code \(code)")
        }
        guesses.succeeded(ip)
        return session
    }

    static func tooMany(_ seconds: Int, _ what: String) -> Problem {
        Problem(.tooManyRequests, "\(what); try again in \(seconds) s", headers: [.retryAfter: "\(seconds)"])
    }
}
