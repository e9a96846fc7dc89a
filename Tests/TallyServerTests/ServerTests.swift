import Foundation
import Logging
import TallyDomain
import Testing

@testable import TallyServer

@Suite("Credentials")
struct CredentialsTests {
    let credentials = Credentials(secret: Array(repeating: 7, count: 32))

    @Test func tokensCarryTheirGrant() {
        for grant in [Grant.operator, .presenter("s1"), .display("s1"), .participant("s1", "p1")] {
            #expect(credentials.verify(credentials.token(for: grant)) == grant)
        }
    }

    @Test func forgedTamperedOrForeignTokensAreRejected() {
        let token = credentials.token(for: .participant("s1", "p1"))
        // Same MAC, different session: the MAC covers every field.
        #expect(credentials.verify(token.replacingOccurrences(of: "pa.s1.", with: "pa.s2.")) == nil)
        #expect(credentials.verify(String(token.dropLast())) == nil)
        #expect(credentials.verify("pr.s1.AAAA") == nil)
        #expect(credentials.verify("") == nil)
        #expect(credentials.verify(String(repeating: "x", count: 10_000)) == nil)
        let other = Credentials(secret: Array(repeating: 8, count: 32))
        #expect(other.verify(token) == nil, "a token from another appliance is worthless here")
    }

    @Test func base64URLMatchesFoundationOnRandomBytes() {
        var rng = SystemRandomNumberGenerator()
        for length in 0..<80 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let reference = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == reference)
            #expect(Base64URL.decode(reference) == bytes)
        }
        // Not base64url, wrong length, or non-canonical trailing bits: refused.
        for bad in ["a", "ab+c", "ab/c", "ab=c", "é", "AB"] {
            #expect(Base64URL.decode(bad) == nil, "\(bad)")
        }
        #expect(Base64URL.decode("AA") == [0])
    }

    /// The JSON nesting pre-check skips brackets inside strings and escapes.
    @Test func jsonNestingDepthIgnoresStrings() {
        #expect(jsonNestingDepth(Array(#"{"a":[1,[2]]}"#.utf8)) == 3)
        #expect(jsonNestingDepth(Array(#"{"a":"[[[[\"[[[\\\\"}"#.utf8)) == 1)
        #expect(jsonNestingDepth(Array((String(repeating: "[", count: 40) + String(repeating: "]", count: 40)).utf8)) == 40)
    }

    @Test func operatorTokensExpire() {
        let token = credentials.token(for: .operator, now: Date(timeIntervalSince1970: 1_000_000))
        #expect(credentials.verify(token, now: Date(timeIntervalSince1970: 1_000_000 + 60)) == .operator)
        #expect(credentials.verify(token, now: Date(timeIntervalSince1970: 1_000_000 + 13 * 3600)) == nil)
    }

    @Test func passwordsAreStoredSaltedAndVerified() async throws {
        let a = try PasswordHash.make(password: "correct horse")
        let b = try PasswordHash.make(password: "correct horse")
        #expect(a != b, "a fresh salt each time")
        #expect(!a.encoded.contains("correct"))
        #expect(a.matches("correct horse"))
        #expect(!a.matches("correct horsE"))
        #expect(PasswordHash(encoded: a.encoded) == a)
        #expect(PasswordHash(encoded: "plain") == nil)
    }
}

@Suite("API contract")
struct ContractTests {
    /// Every route the server answers is in openapi.yaml, and every documented operation is routed.
    @Test func routesAndOpenAPIDocumentAgree() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tally-contract-\(UUID().uuidString)")
        var configuration = TallyConfiguration()
        configuration.dataDirectory = dir.path
        configuration.port = 0
        // The smallest ring, removed afterwards: a default 1 GiB ring per run fills /tmp.
        configuration.ringSize = 1 << 20
        defer { try? FileManager.default.removeItem(at: dir) }
        let app = try await buildApplication(configuration, logger: Logger(label: "test"))
        let routed = Set(
            app.routes.filter { !$0.hasPrefix("HEAD ") }.map {
                $0.replacingOccurrences(of: #"\{(\w+)\}"#, with: "{}", options: .regularExpression)
            }
            .map { $0.replacingOccurrences(of: #":\w+"#, with: "{}", options: .regularExpression) })

        let document = try #require(OpenAPIDocument.text)
        var documented: Set<String> = []
        var currentPath: String?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                currentPath = String(line.dropFirst(2).dropLast())
            } else if let path = currentPath, let method = ["get", "post"].first(where: { line.hasPrefix("    \($0): {") }) {
                documented.insert(
                    "\(method.uppercased()) \(path.replacingOccurrences(of: #"\{\w+\}"#, with: "{}", options: .regularExpression))")
            } else if !line.hasPrefix("  ") {
                currentPath = nil
            } else if let path = currentPath, let method = ["get", "post", "put", "delete", "patch"].first(where: { line == "    \($0):" })
            {
                documented.insert(
                    "\(method.uppercased()) \(path.replacingOccurrences(of: #"\{\w+\}"#, with: "{}", options: .regularExpression))")
            }
        }
        #expect(documented.count >= 15)
        #expect(routed.subtracting(documented).isEmpty, "routes missing from openapi.yaml: \(routed.subtracting(documented).sorted())")
        #expect(documented.subtracting(routed).isEmpty, "documented but not routed: \(documented.subtracting(routed).sorted())")
    }
}
