import Foundation

/// nginx + nchan as the reference peer for the same scenario and the same client.
///
/// Writes its own `nginx.conf` into a fresh temporary directory (2 workers, in-memory channels,
/// loopback only, an unprivileged port chosen here, `daemon off`, pid file and logs in that
/// directory), starts `nginx -p <dir> -c <dir>/nginx.conf` as a child process and stops it with
/// SIGTERM at the end. The system's nginx service and `/etc/nginx` are never used.
/// Install the packages with `Appliance/bench/nchan-peer.sh install` (Debian: `nginx`,
/// `libnginx-mod-nchan`).
enum NchanPeer {
    static let defaultNginx = "/usr/sbin/nginx"
    static let defaultModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

    static func configuration(directory: String, port: Int, module: String, workers: Int) -> String {
        let user = geteuid() == 0 ? "user nobody nogroup;\n" : ""
        // Workers may not raise their descriptor limit past the hard limit they inherit.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let files = Int(min(limit.rlim_max, 65536))
        return """
            # Written by tally-load --peer nchan; lives and dies with one run.
            load_module \(module);
            \(user)worker_processes \(workers);
            daemon off;
            master_process on;
            pid \(directory)/nginx.pid;
            error_log \(directory)/error.log warn;
            worker_rlimit_nofile \(files);
            events {
                worker_connections \(max(1024, files - 64));
                use epoll;
            }
            http {
                access_log off;
                client_body_temp_path \(directory)/tmp/body;
                proxy_temp_path \(directory)/tmp/proxy;
                fastcgi_temp_path \(directory)/tmp/fastcgi;
                uwsgi_temp_path \(directory)/tmp/uwsgi;
                scgi_temp_path \(directory)/tmp/scgi;
                client_body_buffer_size 64k;
                keepalive_requests 10000000;
                keepalive_timeout 600s;
                # In-memory channels (no Redis): messages live in nginx's shared memory.
                nchan_shared_memory_size 256m;
                server {
                    listen 127.0.0.1:\(port);
                    nchan_message_buffer_length 64;
                    nchan_message_timeout 300s;
                    location = /ready { return 200 "ok\\n"; }
                    location = /pub {
                        nchan_publisher http;
                        nchan_channel_id $arg_id;
                    }
                    location = /sub {
                        nchan_subscriber websocket;
                        nchan_channel_id $arg_id;
                        nchan_subscriber_first_message newest;
                    }
                }
            }

            """
    }

    static func start(nginx: String?, module: String?, workers: Int) throws -> ServerUnderTest {
        let executable = nginx ?? defaultNginx
        let modulePath = module ?? defaultModule
        guard FileManager.default.isExecutableFile(atPath: executable), FileManager.default.fileExists(atPath: modulePath) else {
            throw LoadError("nginx + nchan not found (\(executable), \(modulePath)): run Appliance/bench/nchan-peer.sh install")
        }
        let directory = NSTemporaryDirectory() + "tally-load-nchan-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory + "/tmp", withIntermediateDirectories: true)
        let port = freePort()
        try configuration(directory: directory, port: port, module: modulePath, workers: workers)
            .write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-p", directory + "/", "-c", directory + "/nginx.conf", "-e", directory + "/error.log"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle.standardError
        try process.run()
        let server = ServerUnderTest(
            name: "nginx + nchan", port: port, pid: process.processIdentifier, process: process, dataDirectory: directory,
            includeChildren: true)
        let client = BlockingHTTP(host: "127.0.0.1", port: port)
        for _ in 0..<100 {
            if let (status, _) = try? client.request("GET", "/ready"), status == 200 {
                // The workers are up once the master answers through them.
                print("nginx + nchan on 127.0.0.1:\(port): master \(server.pid), workers \(server.childPids)")
                return server
            }
            if !process.isRunning { break }
            usleep(100_000)
        }
        let log = (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? ""
        server.stop()
        throw LoadError("nginx + nchan did not start: \(log.suffix(2000))")
    }

    /// The two messages of one publication, shaped like Tally's `poll.closed` + `poll.opened`
    /// envelopes so that the same parser reads them: `eventId` "<epoch>-<sequence>" with a
    /// per-channel sequence, and the opened poll's question stamped "L<index>:<scheduled ns>".
    static func messages(channel: String, index: Int, scheduled: UInt64) -> (String, String) {
        let closedSequence = 2 * index - 1
        let openedSequence = 2 * index
        let timestamp = "2025-01-01T00:00:00.000+0000"
        let closed =
            #"{"eventId":"nchan-\#(closedSequence)","eventType":"poll.closed","timestamp":"\#(timestamp)","sessionId":"\#(channel)","payload":{"pollId":"p-\#(channel)-\#(index - 1)"}}"#
        let opened =
            #"{"eventId":"nchan-\#(openedSequence)","eventType":"poll.opened","timestamp":"\#(timestamp)","sessionId":"\#(channel)","payload":{"poll":{"id":"p-\#(channel)-\#(index)","question":"L\#(index):\#(scheduled)","options":[{"id":"o1","label":"Yes"},{"id":"o2","label":"No"}],"kind":"single","resultsVisibility":"live","state":"open","revealed":false}}}"#
        return (closed, opened)
    }
}

/// Pids of the processes whose parent is `parent`, from /proc.
func childProcesses(of parent: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var children: [Int32] = []
    for entry in entries {
        guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, Int32(fields[1]) == parent { children.append(pid) }
    }
    return children.sorted()
}
