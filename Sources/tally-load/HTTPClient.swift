import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A tiny blocking HTTP/1.1 client over one keep-alive socket, for the set-up calls and the
/// publishers (a few hundred requests a second at most). Subscribers use NIO instead.
final class BlockingHTTP {
    private var fd: Int32 = -1
    private let host: String
    private let port: Int
    private var pending: [UInt8] = []

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    deinit { if fd >= 0 { close(fd) } }

    private func connectIfNeeded() throws {
        if fd >= 0 { return }
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            fd = -1
            throw LoadError("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        pending = []
    }

    /// Sends one request and returns (status, body). Reconnects once if the connection dropped.
    func request(_ method: String, _ path: String, json body: String? = nil, token: String? = nil) throws -> (Int, [UInt8]) {
        for attempt in 0..<2 {
            do {
                return try send(method, path, body, token)
            } catch {
                if fd >= 0 { close(fd) }
                fd = -1
                if attempt == 1 { throw error }
            }
        }
        fatalError("unreachable")
    }

    /// Waits until `GET path` answers 200 with `containing` in its body 8 times in a row.
    /// Behind a load balancer something just written through one instance reaches the others
    /// a few milliseconds later (they learn of it through PostgreSQL's NOTIFY), and until then
    /// they answer 404; a round-robin balancer spreads these 8 over every instance. On one
    /// server it costs 8 quick requests. Bounded (≤ 400 tries, 5 ms apart). Returns the
    /// answers that were not yet it, so a run can say how long the lag was.
    @discardableResult
    func awaitVisible(_ path: String, token: String?, containing: String? = nil) throws -> Int {
        var inARow = 0
        var misses = 0
        for _ in 0..<400 {
            let (status, body) = try request("GET", path, token: token)
            if status == 200, containing.map({ find(body, Array($0.utf8)) != nil }) ?? true {
                inARow += 1
                if inARow == 8 { return misses }
            } else {
                inARow = 0
                misses += 1
                usleep(5000)
            }
        }
        throw LoadError("GET \(path) never answered 200\(containing.map { " with \($0)" } ?? "") 8 times in a row")
    }

    private func send(_ method: String, _ path: String, _ body: String?, _ token: String?) throws -> (Int, [UInt8]) {
        try connectIfNeeded()
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        let payload = Array((body ?? "").utf8)
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + payload
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw LoadError("send failed") }
            sent += n
        }
        // Read the head, then Content-Length bytes (the server never chunks API responses).
        while true {
            if let end = find(pending, [13, 10, 13, 10]) {
                let headText = String(decoding: pending[..<end], as: UTF8.self)
                let status = Int(headText.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
                var length = 0
                for line in headText.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
                let total = end + 4 + length
                while pending.count < total { try readMore() }
                let responseBody = Array(pending[(end + 4)..<total])
                pending.removeFirst(total)
                return (status, responseBody)
            }
            try readMore()
        }
    }

    private func readMore() throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw LoadError("connection closed") }
        pending += buffer[..<n]
    }
}

func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
    haystack.firstRange(of: needle)?.lowerBound
}

struct LoadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A JSON object's string field, without a JSON decoder (set-up responses are small and flat).
func jsonString(_ body: [UInt8], _ key: String) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
    return object[key] as? String
}
