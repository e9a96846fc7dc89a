import Foundation
import TallyDomain
import TallyEventLog
import Testing

@testable import TallyServer

/// Settings in memory, for the revocation rules.
final class MemorySettings: SettingsStore, @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: String] = [:]
    func setting(_ key: String) throws -> String? { lock.withLock { values[key] } }
    func setSetting(_ key: String, to value: String) throws { lock.withLock { values[key] = value } }
}

@Suite("Revocation")
struct RevocationTests {
    let credentials = Credentials(secret: Array(repeating: 9, count: 32))

    @Test func theApplianceSecretAloneCannotMintAnOperatorSignIn() {
        // What a leaked backup holds: the appliance secret, never the operator key.
        let box = Credentials(secret: Array(repeating: 9, count: 32), operatorKey: Array(repeating: 7, count: 32))
        let fromTheBackup = Credentials(secret: Array(repeating: 9, count: 32))
        #expect(box.verify(fromTheBackup.token(for: .operator)) == nil, "signed with the secret only: refused")
        #expect(box.verify(box.token(for: .operator)) == .operator)
        #expect(box.verify(fromTheBackup.token(for: .presenter("s1"))) == .presenter("s1"), "links stay the secret's")
        // Nor can anyone with the key make a sign-in that outlives the lifetime a sign-in has.
        let later = Date().addingTimeInterval(box.operatorTokenLifetime * 10)
        #expect(box.verify(box.token(for: .operator, now: later)) == nil, "an expiry beyond the lifetime was not made here")
    }

    @Test func linkTokensCarryTheirGeneration() {
        let old = credentials.token(for: .display("s1"))
        let new = credentials.token(for: .display("s1"), generation: 2)
        #expect(old.hasPrefix("di.s1."), "generation 0 keeps the original shape: existing links still verify")
        #expect(credentials.inspect(old)?.facts.generation == 0)
        #expect(credentials.inspect(new)?.facts.generation == 2)
        #expect(credentials.inspect(new)?.grant == .display("s1"))
        // A generation cannot be edited: the MAC covers it.
        #expect(credentials.verify(new.replacingOccurrences(of: "di.s1.2.", with: "di.s1.3.")) == nil)
    }

    @Test func passwordChangeAndLogoutEndOperatorSignIns() async throws {
        let settings = MemorySettings()
        let signIns = OperatorSignIns(settings: settings)
        let before = credentials.inspect(credentials.token(for: .operator, epoch: signIns.epoch))!.facts
        #expect(signIns.honours(before))
        try await signIns.revokeAll()
        #expect(!signIns.honours(before), "issued before the change")
        // Epochs, not clocks: a token stamped later by a wrong clock is still of the old epoch.
        let after = credentials.inspect(credentials.token(for: .operator, epoch: signIns.epoch))!.facts
        #expect(after.epoch == 1 && signIns.honours(after))
        try await revokeOperatorSignIns(in: settings)  // `tally reset-password`
        #expect(OperatorSignIns(settings: settings).honours(after) == false)
        let latest = credentials.inspect(credentials.token(for: .operator, epoch: signIns.epoch))!.facts
        let restarted = OperatorSignIns(settings: settings)
        #expect(restarted.honours(latest))
        try await signIns.revoke(nonce: latest.nonce, expiry: Int(Date().timeIntervalSince1970) + 60)
        #expect(!signIns.honours(latest), "signed out")
        // Another server process (or a restart) reads the same facts from the settings.
        #expect(!OperatorSignIns(settings: settings).honours(latest))
        // Tokens from before revocation existed (`op.<expiry>`) cannot be signed out: refused.
        let legacy = credentials.sign("op.\(Int(Date().timeIntervalSince1970) + 3600)")
        #expect(credentials.verify(legacy) == nil)
    }
}

@Suite("Guess budgets")
struct GuessBudgetTests {
    @Test func wrongCodesLockAnAddressOutAndDecay() {
        let lockout = GuessLockout(allowed: 10)
        let t0 = ContinuousClock.now
        for i in 0..<9 { lockout.failed("a", activeSessions: 1, now: t0.advanced(by: .milliseconds(i))) }
        #expect(lockout.wait("a", activeSessions: 1, now: t0.advanced(by: .milliseconds(10))) == nil)
        lockout.failed("a", activeSessions: 1, now: t0.advanced(by: .milliseconds(10)))
        #expect(lockout.wait("a", activeSessions: 1, now: t0.advanced(by: .milliseconds(11))) != nil, "the 10th wrong code locks")
        #expect(lockout.wait("b", activeSessions: 1, now: t0.advanced(by: .milliseconds(11))) == nil, "per address")
        // Five minutes later, ten failures have decayed away.
        #expect(lockout.wait("a", activeSessions: 1, now: t0.advanced(by: .seconds(301))) == nil)
        lockout.failed("a", activeSessions: 1, now: t0.advanced(by: .seconds(301)))
        #expect(lockout.wait("a", activeSessions: 1, now: t0.advanced(by: .seconds(302))) == nil)
    }

    @Test func theApplianceBudgetIsAYearOfGuessing() {
        // 30^6 / (A × 1.25 years): finding one of A live codes takes 1.25 years at that rate.
        for sessions in [1, 10, 100, 10_000] {
            let rate = GuessLockout.globalRate(activeSessions: sessions)
            let years = GuessLockout.codeSpace / Double(sessions) / rate / GuessLockout.year
            #expect(abs(years - 1.25) < 1e-9)
        }
        #expect(abs(GuessLockout.globalRate(activeSessions: 1) - 18.48) < 0.01)
    }

    @Test func aSpentBudgetHoldsBackEveryTypedGuess() {
        let lockout = GuessLockout(allowed: 10)
        let t0 = ContinuousClock.now
        // 100 live sessions: the budget refills at ~0.185/s; 50 wrong codes from 50 addresses
        // (one each: no address is locked out) spend its burst.
        for i in 0..<49 { lockout.failed("guesser-\(i)", activeSessions: 100, now: t0) }
        #expect(lockout.wait("fresh", activeSessions: 100, now: t0) == nil)
        lockout.failed("guesser-49", activeSessions: 100, now: t0)
        #expect(lockout.wait("guesser-1", activeSessions: 100, now: t0) != nil)
        #expect(lockout.wait("fresh", activeSessions: 100, now: t0) != nil, "an attacker may hold many addresses")
        #expect(lockout.wait("fresh", activeSessions: 100, now: t0.advanced(by: .seconds(6))) == nil, "it refills")
    }

    @Test func signInLockoutGrowsPerAddressAndSparesOthers() {
        let throttle = SignInThrottle(globalPerMinute: 30)
        let t0 = ContinuousClock.now
        for _ in 0..<5 { throttle.failed("x", now: t0) }
        #expect(throttle.wait("x", now: t0) == nil, "five failures are free")
        throttle.failed("x", now: t0)
        #expect(throttle.wait("x", now: t0) == 2)
        throttle.failed("x", now: t0.advanced(by: .seconds(3)))
        #expect(throttle.wait("x", now: t0.advanced(by: .seconds(3))) == 4, "doubling")
        #expect(throttle.wait("operator-laptop", now: t0) == nil)
        throttle.succeeded("x")
        #expect(throttle.wait("x", now: t0.advanced(by: .seconds(3))) == nil)
    }

    @Test func setupCodesCompareLoosely() {
        let code = SetupCode(value: "K7QX-2M9P")
        #expect(code.matches("K7QX-2M9P") && code.matches("k7qx2m9p") && code.matches(" k7qx 2m9p "))
        #expect(!code.matches("K7QX-2M9Q") && !code.matches("") && !code.matches("K7QX-2M9PP"))
        #expect(SetupCode.random().value.count == 9)
    }
}

@Suite("Host allowlist")
struct HostAllowlistTests {
    let hosts = HostAllowlist(publicURL: "https://polls.example.org:8443/", extra: ["Venue.Example"], hostName: "tally-box")

    @Test func theBoxsOwnNamesAreAllowed() {
        for host in [
            "localhost", "localhost:8080", "tally-box", "tally-box.local", "TALLY-BOX.local.", "polls.example.org",
            "polls.example.org:8443", "venue.example", "127.0.0.1:8080", "127.1.2.3", "[::1]:8080", "::1",
        ] {
            #expect(hosts.allows(host), "\(host)")
        }
    }

    @Test func foreignNamesAreNot() {
        for host in [
            "evil.example", "tally-box.evil.example", "localhost.evil.example", "127.0.0.1.evil.example", "", "[::2]:80", "8.8.8.8",
        ] {
            #expect(!hosts.allows(host), "\(host)")
        }
    }

    @Test func theBoxsInterfaceAddressesAreAllowed() {
        for address in HostAllowlist.interfaceAddresses() {
            #expect(hosts.allows(address.contains(":") ? "[\(address)]:80" : "\(address):80"), "\(address)")
        }
    }
}
