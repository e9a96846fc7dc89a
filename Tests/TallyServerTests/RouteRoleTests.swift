import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import TallyServer

/// The app that ships, on a fresh data directory, with a known operator password.
func testApplication(rateLimits: Bool = true) async throws -> TallyApplication {
    var configuration = TallyConfiguration()
    configuration.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-app-\(UUID().uuidString)").path
    configuration.port = 0
    configuration.mdns = false
    configuration.durability = .os
    configuration.ringSize = 1 << 20
    configuration.operatorPassword = "correct horse battery"
    configuration.rateLimits = rateLimits
    return try await buildApplication(configuration, logger: Logger(label: "test"))
}

/// "METHOD /path" with every path parameter written `{}`.
private func normalized(_ route: String) -> String {
    route.replacingOccurrences(of: #"\{\w+\}"#, with: "{}", options: .regularExpression)
        .replacingOccurrences(of: #":\w+"#, with: "{}", options: .regularExpression)
}

/// Requests made through the app's router, in process.
struct RouterCaller {
    let client: any TestClientProtocol

    func call(_ method: HTTPRequest.Method, _ path: String, token: String? = nil, body: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(
            uri: path, method: method, headers: headers,
            body: body.map { ByteBuffer(string: $0) } ?? (method == .post ? ByteBuffer(string: "{}") : nil))
    }

    func json(_ method: HTTPRequest.Method, _ path: String, token: String? = nil, body: String? = nil) async throws -> [String: Any] {
        let response = try await call(method, path, token: token, body: body)
        #expect((200..<300).contains(response.status.code), "\(method) \(path): \(response.status) \(String(buffer: response.body))")
        return try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any] ?? [:]
    }
}

@Suite("Routes by role")
struct RouteRoleTests {
    /// A route under /api/v1 can only be added through a role's group: this fails for one
    /// mounted any other way (straight on the router, say), which would run unchecked.
    @Test func everyAPIRouteIsMountedWithARole() async throws {
        let app = try await testApplication()
        let api = app.routes.filter { !$0.hasPrefix("HEAD ") && $0.contains(" /api/v1/") }.map(normalized)
        let mounted = Set(app.routeRoles.keys.map(normalized))
        #expect(api.count >= 20)
        #expect(Set(api).subtracting(mounted).isEmpty, "API routes outside every role group: \(Set(api).subtracting(mounted).sorted())")
        #expect(mounted.subtracting(api).isEmpty, "recorded but not routed: \(mounted.subtracting(api).sorted())")
        // The policy, in brief: what only the operator may do, and what needs no credential.
        let roles = Dictionary(uniqueKeysWithValues: app.routeRoles.map { (normalized($0.key), $0.value) })
        #expect(roles["POST /api/v1/sessions"] == .operator)
        #expect(roles["GET /api/v1/sessions"] == .operator)
        #expect(roles["POST /api/v1/sessions/{}/polls/{}/votes"] == .participant)
        #expect(roles["GET /api/v1/sessions/{}"] == .viewer)
        #expect(
            Set(roles.filter { $0.value == .anyone }.keys) == [
                "POST /api/v1/auth/login", "POST /api/v1/auth/setup", "GET /api/v1/auth/status", "GET /api/v1/auth/setup-code",
                "POST /api/v1/join", "POST /api/v1/display/pair", "GET /api/v1/wifi", "GET /api/v1/wifi.svg", "GET /api/v1/openapi.yaml",
            ])
    }

    /// Every route that needs a role refuses a caller without credentials (401, with the
    /// challenge) and a caller with another session's credentials (403), before its handler runs.
    @Test func routesRefuseCallersWithoutTheirRole() async throws {
        let app = try await testApplication()
        try await app.application.test(.router) { client in
            let api = RouterCaller(client: client)
            let signIn = try await api.json(.post, "/api/v1/auth/login", body: #"{"password":"correct horse battery"}"#)
            let operatorToken = try #require(signIn["token"] as? String)
            let mine = try await api.json(.post, "/api/v1/sessions", token: operatorToken, body: #"{"title":"Mine"}"#)
            let theirs = try await api.json(.post, "/api/v1/sessions", token: operatorToken, body: #"{"title":"Theirs"}"#)
            let sessionId = try #require(mine["sessionId"] as? String)
            let joinCode = try #require(theirs["joinCode"] as? String)
            let participant = try await api.json(.post, "/api/v1/join", body: #"{"joinCode":"\#(joinCode)"}"#)
            let strangers = [
                try #require(theirs["presenterToken"] as? String), try #require(theirs["displayToken"] as? String),
                try #require(participant["participantToken"] as? String),
            ]
            var checked = 0
            for (route, role) in app.routeRoles where role != .anyone {
                let parts = route.split(separator: " ", maxSplits: 1)
                let method = HTTPRequest.Method(String(parts[0]))!
                let path = normalized(String(parts[1])).replacingOccurrences(of: "/sessions/{}", with: "/sessions/\(sessionId)")
                    .replacingOccurrences(of: "{}", with: "pollx")
                let anonymous = try await api.call(method, path)
                #expect(anonymous.status == .unauthorized, "\(route) without credentials")
                #expect(anonymous.headers[.wwwAuthenticate] == "Bearer", "\(route)")
                #expect(anonymous.headers[.contentType] == "application/problem+json", "\(route)")
                for token in strangers {
                    let stranger = try await api.call(method, path, token: token)
                    #expect(stranger.status == .forbidden, "\(route) with another session's credential")
                }
                checked += 1
            }
            #expect(checked >= 12)
        }
    }

    /// Two taps (or a retry) of one phone's first vote, racing: exactly one is the new ballot (201).
    @Test func racingFirstVotesGetExactlyOneCreated() async throws {
        let app = try await testApplication(rateLimits: false)
        try await app.application.test(.router) { client in
            let api = RouterCaller(client: client)
            let signIn = try await api.json(.post, "/api/v1/auth/login", body: #"{"password":"correct horse battery"}"#)
            let operatorToken = try #require(signIn["token"] as? String)
            let session = try await api.json(.post, "/api/v1/sessions", token: operatorToken, body: #"{"title":"Race"}"#)
            let sessionId = try #require(session["sessionId"] as? String)
            let joinCode = try #require(session["joinCode"] as? String)
            let poll = try await api.json(
                .post, "/api/v1/sessions/\(sessionId)/polls", token: operatorToken,
                body: #"{"question":"Ship it?","options":["Yes","No"],"open":true}"#)
            let pollId = try #require(poll["pollId"] as? String)
            for _ in 0..<10 {
                let joined = try await api.json(.post, "/api/v1/join", body: #"{"joinCode":"\#(joinCode)"}"#)
                let token = try #require(joined["participantToken"] as? String)
                let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            try await api.call(
                                .post, "/api/v1/sessions/\(sessionId)/polls/\(pollId)/votes", token: token, body: #"{"optionIds":["o1"]}"#
                            ).status
                        }
                    }
                    return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == .created }.count == 1, "\(statuses)")
                #expect(statuses.filter { $0 == .ok }.count == 7, "\(statuses)")
            }
        }
    }
}
