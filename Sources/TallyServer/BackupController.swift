import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The operator's download of a backup (`tally backup` as a file from the browser).
final class BackupController: Sendable {
    let dataDirectory: String
    /// In a cluster the data is PostgreSQL's: its own tools back it up, not an instance.
    let clustered: Bool
    let logger: Logger
    /// One download at a time: each is a full copy of the data on the box's own disk.
    private let busy = Mutex(false)

    init(dataDirectory: String, clustered: Bool = false, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.clustered = clustered
        self.logger = logger
    }

    func addRoutes(to api: APIRoutes) {
        api.role(.operator).get("operator/backup", use: download)
    }

    /// Makes the archive beside the data (never in a shared temporary directory: it holds the
    /// signing secret), opens it, removes its name at once (the open handle keeps the bytes until
    /// the response ends, however it ends), then streams it. Never the operator password, nor the
    /// key operator sign-ins are made with: a download leaves the box for a laptop or a stick.
    func download(_ request: Request, context: TallyRequestContext) async throws -> Response {
        if clustered {
            throw Problem(
                .conflict,
                "this instance is part of a cluster: its data lives in PostgreSQL; back that up with pg_dump (README, \"Scaling past one box\")"
            )
        }
        let name = BackupArchive.suggestedName()
        let headers: HTTPFields = [
            .contentType: "application/x-tar", .contentDisposition: "attachment; filename=\"\(name)\"", .cacheControl: "no-store",
        ]
        // HEAD says what a GET would send without making a copy of the box for nothing.
        if request.method == .head { return Response(status: .ok, headers: headers) }
        guard
            busy.withLock({ taken in
                if taken { return false }
                taken = true
                return true
            })
        else {
            throw Problem(
                .tooManyRequests, "a backup is being downloaded already; try again when it has finished", headers: [.retryAfter: "5"])
        }
        defer { busy.withLock { $0 = false } }
        let directory = dataDirectory
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
        let handle = FileHandle(forReadingAtPath: path)
        unlink(path)
        guard let handle else { throw Problem(.serviceUnavailable, "the backup could not be read back", headers: [.retryAfter: "5"]) }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        try? handle.seek(toOffset: 0)
        logger.notice(
            "backup downloaded",
            metadata: [
                "bytes": "\(size)", "sessions": "\(manifest.sessions)", "committed_through": "\(manifest.committedThrough)",
                "took": "\(started.duration(to: .now))",
            ])
        let body = ResponseBody { writer in
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 256 * 1024), !chunk.isEmpty {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        var all = headers
        all[.contentLength] = "\(size)"
        return Response(status: .ok, headers: all, body: body)
    }
}
