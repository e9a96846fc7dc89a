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
        return tokens.prefix(16).compactMap { credentials.verify($0) }
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

    func requirePresenter(_ request: Request, of session: SessionID) throws {
        let grants = grants(of: request)
        guard grants.contains(where: { $0 == .operator || $0 == .presenter(session) }) else {
            throw Self.denied(grants, "only this session's presenter may do this")
        }
    }

    func requireParticipant(_ request: Request, of session: SessionID) throws -> ParticipantID {
        let grants = grants(of: request)
        for grant in grants {
            if case .participant(session, let participant) = grant { return participant }
        }
        throw Self.denied(grants, "only participants who joined this session may vote")
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
        HTTPField(
            name: .setCookie,
            value: "\(Self.cookieName(for: grant))=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
                + (secureCookies ? "; Secure" : ""))
    }
}

/// The operator password: from the configuration, or set once on first run and stored hashed.
/// The stored hash is read at every sign-in, so `tally reset-password` takes effect at once.
final class OperatorPassword: Sendable {
    private let settings: any SettingsStore
    private let configured: PasswordHash?
    private let setupLock = Mutex(())

    init(configured: String?, settings: any SettingsStore) throws {
        self.settings = settings
        self.configured = try configured.map { try PasswordHash.make(password: $0) }
    }

    private var stored: PasswordHash? {
        (try? settings.setting("operator_password")).flatMap { $0 }.flatMap(PasswordHash.init(encoded:))
    }

    var isSet: Bool { configured != nil || stored != nil }

    func matches(_ password: String) -> Bool {
        guard let hash = configured ?? stored else { return false }
        return hash.matches(password)
    }

    /// First-run set-up: succeeds only while no password exists.
    func setInitial(_ password: String) throws -> Bool {
        let new = try PasswordHash.make(password: password)
        return try setupLock.withLock { _ in
            guard !isSet else { return false }
            try settings.setSetting("operator_password", to: new.encoded)
            return true
        }
    }
}
