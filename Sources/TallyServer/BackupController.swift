import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix

/// The operator's download of a backup (`tally backup` as a file from the browser).
struct BackupController {
    let dataDirectory: String
    let logger: Logger

    func addRoutes(to api: APIRoutes) {
        api.role(.operator).get("operator/backup", use: download)
    }

    /// Makes the archive beside the data (never in a shared temporary directory: it holds the
    /// signing secret), streams it, then removes it. Never the operator password: a download
    /// leaves the browser for a laptop or a stick; `tally backup --include-password` on the box
    /// is the way to carry it.
    func download(_ request: Request, context: TallyRequestContext) async throws -> Response {
        let directory = dataDirectory
        let name = BackupArchive.suggestedName()
        let path = (directory as NSString).appendingPathComponent(".download-\(UUID().uuidString.prefix(8).lowercased()).tar")
        let started = ContinuousClock.now
        let manifest: BackupArchive.Manifest
        do {
            manifest = try await NIOThreadPool.singleton.runIfActive {
                try BackupArchive.make(dataDirectory: directory, to: path, includePassword: false)
            }
        } catch {
            unlink(path)
            logger.error("backup download failed", metadata: ["error": "\(error)"])
            throw Problem(.serviceUnavailable, "the backup could not be made: \(error)", headers: [.retryAfter: "5"])
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        logger.notice(
            "backup downloaded",
            metadata: [
                "bytes": "\(size)", "sessions": "\(manifest.sessions)", "committed_through": "\(manifest.committedThrough)",
                "took": "\(started.duration(to: .now))",
            ])
        let body = ResponseBody { writer in
            defer { unlink(path) }
            guard let handle = FileHandle(forReadingAtPath: path) else { return }
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 256 * 1024), !chunk.isEmpty {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/x-tar",
                .contentDisposition: "attachment; filename=\"\(name)\"",
                .contentLength: "\(size)",
                .cacheControl: "no-store",
            ],
            body: body)
    }
}
