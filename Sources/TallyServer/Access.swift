import Foundation
import HTTPTypes
import Hummingbird
import Synchronization
import TallyDomain
import TallyEventLog

/// Resolves who is calling, from a bearer token, a `tally_*` cookie or (for `/events` only)
/// the `token` query parameter. Tokens are never logged.
struct Access: Sendable {
    let credentials: Credentials
    /// Which operator tokens are still honoured (password changes, logouts).
    let signIns: OperatorSignIns
    /// The current generation of a session's presenter or display link; tokens of any other
    /// generation are refused (rotation).
    let linkGeneration: @Sendable (SessionID, SessionLink) -> Int
    /// Mark cookies `Secure` when participants reach the box over TLS (an https public URL,
    /// e.g. behind a TLS-terminating proxy); on plain-HTTP venue Wi-Fi a Secure cookie would
    /// never be sent back.
    var secureCookies = false

    static let operatorCookie = "tally_op"

    static func cookieName(for grant: Grant) -> String {
        switch grant {
        case .operator: operatorCookie
        case .presenter(let s): "tally_pr_\(s)"
        case .display(let s): "tally_di_\(s)"
        case .participant(let s, _): "tally_pa_\(s)"
        }
    }

    /// Every valid grant the request carries.
    func grants(of request: Request, queryToken: String? = nil) -> [Grant] {
        tokens(of: request, queryToken: queryToken).compactMap(grant)
    }

    /// The operator sign-in (its epoch and nonce) the request carries, if one is honoured: a
    /// stream opened with it ends when it is revoked.
    func operatorSignIn(of request: Request, queryToken: String? = nil) -> Credentials.Facts? {
        for token in tokens(of: request, queryToken: queryToken) {
            if let (grant, facts) = credentials.inspect(token), grant == .operator, signIns.honours(facts) { return facts }
        }
        return nil
    }

    /// The tokens a request carries (bearer first, then `tally_*` cookies, then the query's),
    /// unverified, at most 16.
    func tokens(of request: Request, queryToken: String? = nil) -> ArraySlice<String> {
        var tokens: [String] = []
        if let authorization = request.headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { tokens.append(String(parts[1])) }
        }
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { continue }
                let name = kv[0].trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("tally_") { tokens.append(kv[1].trimmingCharacters(in: .whitespaces)) }
            }
        }
        if let queryToken { tokens.append(queryToken) }
        return tokens.prefix(16)
    }

    /// The grant of one token, if it is genuine, unexpired and not revoked.
    func grant(_ token: String) -> Grant? {
        guard let (grant, facts) = credentials.inspect(token) else { return nil }
        switch grant {
        case .operator: return signIns.honours(facts) ? grant : nil
        case .presenter(let s): return facts.generation == linkGeneration(s, .presenter) ? grant : nil
        case .display(let s): return facts.generation == linkGeneration(s, .display) ? grant : nil
        case .participant: return grant
        }
    }

    /// A presenter or display token of the link's current generation.
    func token(for grant: Grant) -> String {
        switch grant {
        case .presenter(let s): credentials.token(for: grant, generation: linkGeneration(s, .presenter))
        case .display(let s): credentials.token(for: grant, generation: linkGeneration(s, .display))
        default: credentials.token(for: grant)
        }
    }

    /// 401 when the request carries no valid credential at all, 403 when it does but not this one.
    static func denied(_ grants: [Grant], _ what: String) -> Problem {
        grants.isEmpty
            ? Problem(.unauthorized, "sign in first: \(what)", headers: [.wwwAuthenticate: "Bearer"])
            : Problem(.forbidden, "your credentials do not allow this: \(what)")
    }

    func requireOperator(_ request: Request) throws {
        let grants = grants(of: request)
        guard grants.contains(.operator) else { throw Self.denied(grants, "only the operator may do this") }
    }

    /// The participant the grants make the caller on `session`, if any.
    static func participant(_ grants: [Grant], of session: SessionID) -> ParticipantID? {
        for grant in grants {
            if case .participant(session, let participant) = grant { return participant }
        }
        return nil
    }

    /// The most capable role the grants give on `session`, if any.
    static func viewer(_ grants: [Grant], of session: SessionID) -> (Role, ParticipantID?)? {
        if grants.contains(where: { $0 == .operator || $0 == .presenter(session) }) { return (.presenter, nil) }
        if grants.contains(.display(session)) { return (.display, nil) }
        for grant in grants {
            if case .participant(session, let participant) = grant { return (.participant, participant) }
        }
        return nil
    }

    /// `Set-Cookie` for a browser: HttpOnly (no script can read it), SameSite=Strict (never sent
    /// on cross-site requests).
    func cookie(for grant: Grant, token: String, maxAge: Int) -> HTTPField {
        cookie(named: Self.cookieName(for: grant), value: token, maxAge: maxAge)
    }

    /// Tells the browser to forget a cookie (sign-out).
    func expiredCookie(for grant: Grant) -> HTTPField {
        cookie(named: Self.cookieName(for: grant), value: "", maxAge: 0)
    }

    private func cookie(named name: String, value token: String, maxAge: Int) -> HTTPField {
        HTTPField(
            name: .setCookie,
            value: "\(name)=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
                + (secureCookies ? "; Secure" : ""))
    }
}

/// The key a join link (`/j/{code}?k=…`, the QR code) carries besides the code: 128 bits
/// derived from the appliance secret, so a link join can be told from a typed guess and never
/// shares the typed-code lockout.
enum JoinLink {
    static func key(for session: SessionID, _ credentials: Credentials) -> String {
        credentials.digest("join-link.\(session)")
    }

    static func matches(_ key: String, session: SessionID, _ credentials: Credentials) -> Bool {
        constantTimeEqual(Array(self.key(for: session, credentials).utf8), Array(key.utf8))
    }
}
