import Foundation
import HTTPTypes
import Hummingbird
import TallyDomain
import TallyEventLog
import TallyRealtime

/// Signing in: the operator's password (first-run set-up, sign-in, change, sign-out) and what
/// the presenter page needs to choose between them.
struct SignInController {
    let access: Access
    let password: OperatorPassword
    let limits: Limits
    let hub: EventHub
    /// First-run set-up code (nil when a password was already set at start).
    let setupCode: SetupCode?

    func addRoutes(to api: APIRoutes) {
        let anyone = api.role(.anyone)
        anyone.post("auth/login", use: login)
        anyone.post("auth/setup", use: setup)
        anyone.get("auth/status", use: authStatus)
        anyone.get("auth/setup-code", use: showSetupCode)
        api.role(.operator, requirement: "only an operator sign-in can be signed out").post("auth/logout", use: logout)
        api.role(.operator).post("auth/password", use: changePassword)
    }

    struct PasswordBody: Decodable { let password: String }
    struct TokenResponse: Encodable {
        let token: String
        let expiresIn: Int
    }

    func login(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let body = try await decode(PasswordBody.self, request, context)
        guard password.isSet else {
            throw Problem(.conflict, "no operator password is set yet: choose one with POST /api/v1/auth/setup")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many failed sign-ins from your address") }
        // Read before the password is checked: a change landing meanwhile makes this token stale.
        let epoch = access.signIns.epoch
        guard body.password.utf8.count <= 256, try await password.matches(body.password) else {
            limits.signIns.failed(ip)
            context.logger.notice("operator sign-in refused", metadata: ["client": "\(ip)"])
            throw Problem(.unauthorized, "wrong password")
        }
        limits.signIns.succeeded(ip)
        return signedIn(context, epoch: epoch)
    }

    struct SetupBody: Decodable {
        let password: String
        let setupCode: String?
    }

    func setup(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // First-run set-up only from the local network: never from a routed, public address,
        // and never relayed by a proxy (decided by the real peer, not a forwarded address).
        guard context.client.isOnTheLocalNetwork else {
            throw Problem(.forbidden, "the operator password can only be set from the local network")
        }
        let body = try await decode(SetupBody.self, request, context)
        // Cheap checks first: nothing is hashed for a request that cannot succeed.
        guard !password.isSet, let setupCode else {
            throw Problem(.conflict, "the operator password is already set; sign in with POST /api/v1/auth/login")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many wrong set-up codes from your address") }
        guard let typed = body.setupCode, setupCode.matches(typed) else {
            limits.signIns.failed(ip)
            context.logger.notice("first-run set-up refused: wrong set-up code", metadata: ["client": "\(ip)"])
            throw Problem(
                .forbidden,
                body.setupCode == nil
                    ? "the set-up code is required: it is shown on the appliance's own screen and in its log (journalctl -u tally)"
                    : "wrong set-up code: it is shown on the appliance's own screen and in its log (journalctl -u tally)")
        }
        guard body.password.count >= 8, body.password.utf8.count <= 256 else {
            throw Problem(.badRequest, "the operator password must have 8 to 256 characters")
        }
        let epoch = access.signIns.epoch
        guard try await password.setInitial(body.password) else {
            throw Problem(.conflict, "the operator password is already set; sign in with POST /api/v1/auth/login")
        }
        limits.signIns.succeeded(ip)
        context.logger.notice("operator password set on first run")
        return signedIn(context, epoch: epoch)
    }

    struct AuthStatus: Encodable {
        let operatorPasswordSet: Bool
        let signedInAsOperator: Bool
    }

    /// What the presenter page needs to choose between sign-in and set-up; nothing more (the
    /// set-up code itself is never revealed here).
    func authStatus(_ request: Request, context: TallyRequestContext) async throws -> Response {
        json(AuthStatus(operatorPasswordSet: password.isSet, signedInAsOperator: context.caller.grants.contains(.operator)))
    }

    struct SetupCodeResponse: Encodable { let setupCode: String }

    /// The set-up code, for the box's own screen only: the request must come from the box
    /// itself by its real address (a forwarded request never counts as local).
    func showSetupCode(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard context.client.isOnTheAppliance else {
            throw Problem(.forbidden, "the set-up code is shown only on the appliance's own screen")
        }
        guard !password.isSet, let setupCode else { throw Problem(.notFound, "set-up is done: the operator password is set") }
        return json(SetupCodeResponse(setupCode: setupCode.value))
    }

    private func signedIn(_ context: TallyRequestContext, epoch: Int64) -> Response {
        let lifetime = Int(access.credentials.operatorTokenLifetime)
        let token = access.credentials.token(for: .operator, epoch: epoch)
        var response = json(TokenResponse(token: token, expiresIn: lifetime))
        response.headers.append(access.cookie(for: .operator, token: token, maxAge: lifetime))
        return response
    }

    /// Ends this operator sign-in: its token (bearer or cookie) stops working everywhere.
    func logout(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var revoked = 0
        for token in access.tokens(of: request) {
            // Only a sign-in that still works can be ended (a second logout is a 401).
            guard access.grant(token) == .operator, let (_, facts) = access.credentials.inspect(token), !facts.nonce.isEmpty,
                let expiry = Credentials.operatorExpiry(token)
            else { continue }
            try await access.signIns.revoke(nonce: facts.nonce, expiry: expiry)
            revoked += 1
        }
        // Streams opened with the token end too.
        hub.endOperatorStreams { !access.signIns.honours($0) }
        guard revoked > 0 else { throw Access.denied(context.caller.grants, "only an operator sign-in can be signed out") }
        context.logger.notice("operator signed out")
        var response = Response(status: .noContent)
        response.headers.append(access.expiredCookie(for: .operator))
        return response
    }

    struct ChangePasswordBody: Decodable {
        let currentPassword: String
        let newPassword: String
    }

    /// A new operator password; every earlier operator sign-in (on any device) ends.
    func changePassword(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let body = try await decode(ChangePasswordBody.self, request, context)
        guard !password.isConfigured else {
            throw Problem(.conflict, "the operator password comes from the configuration (operator-password); change it there")
        }
        guard body.newPassword.count >= 8, body.newPassword.utf8.count <= 256 else {
            throw Problem(.badRequest, "the new operator password must have 8 to 256 characters")
        }
        let ip = Limits.ip(context)
        if let wait = limits.signIns.wait(ip) { throw Limits.tooMany(wait, "too many failed sign-ins from your address") }
        guard body.currentPassword.utf8.count <= 256, try await password.matches(body.currentPassword) else {
            limits.signIns.failed(ip)
            throw Problem(.forbidden, "the current password is wrong")
        }
        try await password.change(to: body.newPassword)
        try await access.signIns.revokeAll()
        let ended = hub.endOperatorStreams { !access.signIns.honours($0) }
        context.logger.notice("operator password changed; earlier operator sign-ins revoked", metadata: ["streams_closed": "\(ended)"])
        return signedIn(context, epoch: access.signIns.epoch)
    }
}
