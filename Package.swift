// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "tally",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tally", targets: ["tally"]),
        .executable(name: "tally-bench", targets: ["tally-bench"]),
        .executable(name: "tally-load", targets: ["tally-load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // HTTP/1 ⇄ swift-http-types conversion for the /events upgrade path (already under Hummingbird).
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // Cluster mode: the shared event log, settings and counters in PostgreSQL.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // Sessions, polls, ballots: commands in, events out. No I/O, no framework imports.
        .target(
            name: "TallyDomain",
            swiftSettings: swiftSettings
        ),
        // libqrencode (Debian libqrencode-dev): QR codes for the join URL, drawn as SVG.
        .systemLibrary(
            name: "CQRencode",
            pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]
        ),
        // libavahi-client (Debian libavahi-client-dev): talks to avahi-daemon over D-Bus.
        .systemLibrary(
            name: "CAvahi",
            pkgConfig: "avahi-client",
            providers: [.apt(["libavahi-client-dev"])]
        ),
        // mDNS: advertises the appliance through avahi-daemon, and finds appliances.
        .target(
            name: "TallyDiscovery",
            dependencies: [
                "CAvahi",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // CRC-32C with the CPU's instruction where there is one (ring records are checksummed).
        .target(name: "CCRC32C"),
        // The durable, ordered event log (memory-mapped ring, group commit) every state change
        // goes through, and the SQLite projection of the sessions.
        .target(
            name: "TallyEventLog",
            dependencies: [
                "TallyDomain",
                "CCRC32C",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Cluster mode (`--store postgresql://…`): the event log, the shared settings and the
        // shared counters of several instances in one PostgreSQL. SQL only; the server decides.
        .target(
            name: "TallyCluster",
            dependencies: [
                "TallyDomain",
                "TallyEventLog",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // `/events` on SwiftNIO: the WebSocket upgrade beside HTTP, one sink per transport
        // (WebSocket, SSE), wire formats, the replay cache, and the hub that routes durable
        // events to sinks by session and role. Knows nothing of credentials: the server's
        // `StreamGate` decides who may watch what.
        .target(
            name: "TallyRealtime",
            dependencies: [
                "TallyDomain",
                "TallyEventLog",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                // SHA-1 for the WebSocket handshake's accept key.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP API, credentials, the domain's single writers; mounts /events from TallyRealtime.
        .target(
            name: "TallyServer",
            dependencies: [
                "TallyDomain",
                "TallyDiscovery",
                "TallyEventLog",
                "TallyRealtime",
                "TallyCluster",
                "CQRencode",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                // TLS for venues that have a certificate (swift-nio-ssl underneath).
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            exclude: ["Resources"],
            swiftSettings: swiftSettings,
            plugins: ["EmbedResourcesPlugin"]
        ),
        // Build-time: embeds Sources/TallyServer/Resources into the binary.
        .executableTarget(name: "embed-resources", path: "Sources/embed-resources"),
        .plugin(
            name: "EmbedResourcesPlugin",
            capability: .buildTool(),
            dependencies: ["embed-resources"],
            path: "Sources/EmbedResourcesPlugin"
        ),
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyServer",
                "TallyCluster",
                "TallyDomain",
                "TallyEventLog",
                "TallyDiscovery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Benchmarks of the event ring (run with -c release).
        .executableTarget(
            name: "tally-bench",
            dependencies: [
                "TallyEventLog",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Load generator for real-time delivery (run with -c release against a real server).
        .executableTarget(
            name: "tally-load",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "TallyDomainTests", dependencies: ["TallyDomain"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyEventLogTests",
            dependencies: [
                "TallyEventLog", "TallyDomain", .product(name: "Logging", package: "swift-log"),
                // The upgrade tests write databases as older releases left them.
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyServerTests",
            dependencies: [
                "TallyServer", "TallyDomain", "TallyEventLog",
                // In-process requests through the app's router (`app.test(.router)`).
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TallyRealtimeTests",
            dependencies: [
                "TallyRealtime", "TallyDomain", "TallyEventLog",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(name: "TallyDiscoveryTests", dependencies: ["TallyDiscovery"], swiftSettings: swiftSettings),
    ]
)
