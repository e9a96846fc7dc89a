import Foundation
import Hummingbird
import NIOCore

/// Decodes a JSON request body, turning every failure into a precise 400 or 413.
func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: TallyRequestContext) async throws -> T {
    if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
        throw Problem(.unsupportedMediaType, "send the body as application/json")
    }
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: context.maxUploadSize)
    } catch {
        throw Problem(.contentTooLarge, "request body is larger than \(context.maxUploadSize / 1024) KiB")
    }
    guard buffer.readableBytes > 0 else { throw Problem(.badRequest, "the request needs a JSON body") }
    if jsonNestingDepth(buffer.readableBytesView) > maxJSONNesting {
        throw Problem(.badRequest, "the JSON body is nested deeper than \(maxJSONNesting) levels")
    }
    do {
        return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
    } catch let error as DecodingError {
        throw Problem(.badRequest, describe(error))
    } catch {
        throw Problem(.badRequest, "the body is not valid JSON")
    }
}

/// Our bodies are at most two levels deep; anything far deeper is an attack on the parser.
let maxJSONNesting = 16

/// The deepest nesting of arrays and objects, outside strings, in one pass without parsing.
func jsonNestingDepth(_ bytes: some Sequence<UInt8>) -> Int {
    var depth = 0, deepest = 0
    var inString = false, escaped = false
    for byte in bytes {
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            depth += 1
            deepest = max(deepest, depth)
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
    return deepest
}

private func describe(_ error: DecodingError) -> String {
    func path(_ p: [any CodingKey]) -> String {
        p.isEmpty ? "the body" : "'" + p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "'"
    }
    switch error {
    case .keyNotFound(let key, let ctx): return "missing field \(path(ctx.codingPath + [key]))"
    case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)) must be \(describe(type))"
    case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)) must be \(describe(type)), not null"
    case .dataCorrupted(let ctx):
        if ctx.codingPath.isEmpty { return "the body is not valid JSON" }
        if ctx.debugDescription.hasPrefix("must be") { return "\(path(ctx.codingPath)) \(ctx.debugDescription)" }
        return "\(path(ctx.codingPath)) has an unexpected value"
    @unknown default: return "the body does not match the expected shape"
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "true or false"
    case is [String].Type: "an array of strings"
    case is Int.Type, is Double.Type: "a number"
    default: type is any Collection.Type ? "an array" : "an object"
    }
}
