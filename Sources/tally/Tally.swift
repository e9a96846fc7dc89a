import ArgumentParser
import Foundation
import Logging
import TallyCluster
import TallyDiscovery
import TallyEventLog
import TallyServer

@main
struct Tally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Live polling for a room full of phones, served from a box at the venue.",
        version: TallyConfiguration.version,
        subcommands: [Serve.self, Discover.self, ResetPassword.self, Export.self, Backup.self, Restore.self, Migrate.self],
        defaultSubcommand: Serve.self)
}

/// `tally serve`'s exit status for data a newer Tally wrote (EX_DATAERR): the unit's
/// `RestartPreventExitStatus=` names it, since restarting cannot help until Tally is upgraded.
let newerDataExitCode: Int32 = 65

/// The default configuration file, read when it exists.
let defaultConfigFile = "/etc/tally/tally.conf"

/// `tally serve`: run the appliance. Settings come from the configuration file, then `TALLY_*`
/// environment variables, then the command line — each overriding the one before.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Tally server.",
        discussion: "Settings: \(defaultConfigFile) (or --config / TALLY_CONFIG) < TALLY_* environment < options.")

    @Option(help: "Configuration file (env TALLY_CONFIG). Default \(defaultConfigFile) when it exists.")
    var config: String?
    @Option(help: "Address to listen on. Default 0.0.0.0 (every interface).")
    var host: String?
    @Option(help: "TCP port. Default 8080.")
    var port: String?
    @Option(name: .customLong("data-dir"), help: "Directory for the database and the event ring. Default ./.tally-data.")
    var dataDir: String?
    @Option(name: .customLong("operator-password"), help: "Operator password. Without it: the stored one, or first-run set-up.")
    var operatorPassword: String?
    @Option(
        name: .customLong("public-url"), help: "URL participants use to reach this box (join links, QR codes), e.g. http://tally.local.")
    var publicURL: String?
    @Option(help: "Name advertised over mDNS. Default \"Tally on <hostname>\".")
    var name: String?
    @Flag(name: .customLong("no-mdns"), help: "Do not advertise over mDNS.")
    var noMDNS = false
    @Option(help: "fsync (default: acknowledged votes survive a power cut) or os (they survive a crash of the process).")
    var durability: String?
    @Option(name: .customLong("ring-size"), help: "Size of the event ring file, e.g. 1GiB (default), 256MiB.")
    var ringSize: String?
    @Option(name: .customLong("retention-hours"), help: "How long events stay replayable, capacity permitting. Default 24.")
    var retentionHours: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info (default), notice, warning, error or critical.")
    var logLevel: String?
    @Option(name: .customLong("rate-limits"), help: "yes (default) or no: limits on votes and joins per participant and per IP.")
    var rateLimits: String?
    @Option(name: .customLong("max-connections"), help: "Open connections in all. Default 20000.")
    var maxConnections: String?
    @Option(name: .customLong("max-connections-per-ip"), help: "Open connections from one address. Default 8000 (a hall behind one NAT).")
    var maxConnectionsPerIP: String?
    @Option(name: .customLong("header-timeout"), help: "Seconds a new connection has to send its request head. Default 10.")
    var headerTimeout: String?
    @Option(name: .customLong("idle-timeout"), help: "Seconds a keep-alive connection may sit idle. Default 60.")
    var idleTimeout: String?
    @Option(
        name: .customLong("stream-queue-limit"),
        help: "Events a stream may fall behind before it is closed as a slow consumer (WebSocket 4008). Default 4096.")
    var streamQueueLimit: String?
    @Option(
        name: .customLong("ping-interval"),
        help: "Seconds between WebSocket pings; each connection's first comes at a random point within it. Default 30.")
    var pingInterval: String?
    @Option(help: "shared (default: many phones behind one NAT) or flat (one address per phone): sets per-address budgets.")
    var network: String?
    @Option(name: .customLong("joins-per-minute"), help: "In flat mode: new participants one address may create per minute. Default 3.")
    var joinsPerMinute: String?
    @Option(
        name: .customLong("allowed-hosts"),
        help: "Extra host names this box answers to, comma-separated (its addresses, host name, .local name and public-url always work).")
    var allowedHosts: String?
    @Option(
        name: .customLong("wifi-ssid"),
        help: "Wi-Fi network the room joins (the standalone access point): the display shows it as a QR code.")
    var wifiSSID: String?
    @Option(name: .customLong("wifi-passphrase"), help: "That network's WPA2 passphrase (as in hostapd.conf); none for an open network.")
    var wifiPassphrase: String?
    @Option(name: .customLong("tls-cert"), help: "TLS certificate (PEM, leaf first). With --tls-key the port serves HTTPS and wss only.")
    var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "TLS private key (PEM, unencrypted).")
    var tlsKey: String?
    @Option(name: .customLong("http-redirect-port"), help: "With TLS: also listen for plain HTTP here and redirect (308) to https.")
    var httpRedirectPort: String?
    @Option(
        name: .customLong("trusted-proxies"),
        help: "Reverse proxies (CIDRs, e.g. 127.0.0.1,::1) whose X-Forwarded-For/Forwarded name the client. Default none.")
    var trustedProxies: String?
    @Option(
        name: .customLong("blocklist"),
        help: "A file of words never shown on screens (one per line); matching words and answers are counted but hidden.")
    var blocklist: String?
    @Option(
        help:
            "Cluster mode: the PostgreSQL several instances share, postgresql://user@host:port/database. The password comes from --store-password-file or TALLY_STORE_PASSWORD, never the URL."
    )
    var store: String?
    @Option(name: .customLong("store-password-file"), help: "File holding the PostgreSQL password (e.g. a systemd credential).")
    var storePasswordFile: String?

    func run() async throws {
        DataDirectory.keepNewFilesPrivate()
        let env = ProcessInfo.processInfo.environment
        let (configuration, level): (TallyConfiguration, String)
        do {
            var settings = try Settings.layered(config: config, environment: env, defaultFile: defaultConfigFile)
            let command = SettingSource(description: "the command line")
            let options: [(String, String?)] = [
                ("host", host), ("port", port), ("data-dir", dataDir), ("operator-password", operatorPassword),
                ("public-url", publicURL), ("name", name), ("durability", durability), ("ring-size", ringSize),
                ("retention-hours", retentionHours), ("log-level", logLevel), ("mdns", noMDNS ? "no" : nil),
                ("rate-limits", rateLimits), ("max-connections", maxConnections),
                ("max-connections-per-ip", maxConnectionsPerIP), ("header-timeout", headerTimeout), ("idle-timeout", idleTimeout),
                ("stream-queue-limit", streamQueueLimit), ("ping-interval", pingInterval), ("network", network),
                ("joins-per-minute", joinsPerMinute), ("allowed-hosts", allowedHosts),
                ("wifi-ssid", wifiSSID), ("wifi-passphrase", wifiPassphrase),
                ("tls-cert", tlsCert), ("tls-key", tlsKey), ("http-redirect-port", httpRedirectPort),
                ("trusted-proxies", trustedProxies), ("blocklist", blocklist), ("store", store),
                ("store-password-file", storePasswordFile),
            ]
            for case let (key, value?) in options { settings.set(key, value, from: command) }
            (configuration, level) = try settings.configuration()
        } catch let error as SettingsError {
            throw ValidationError(error.description)
        }
        var config = configuration
        config.healthFile = env["TALLY_HEALTH_FILE"]
        if config.storePassword == nil, let password = env["TALLY_STORE_PASSWORD"] { config.storePassword = password }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: level) ?? .info
            return handler
        }
        let logger = Logger(label: "tally")
        do {
            // Held while the server runs: `tally restore` refuses a directory a server is using.
            let lock: DataDirectory.Lock
            do {
                // Only made here when absent; the server repairs its permissions (and logs it).
                if !FileManager.default.fileExists(atPath: config.dataDirectory) {
                    try FileManager.default.createDirectory(
                        atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                }
                lock = try DataDirectory.Lock(directory: config.dataDirectory)
            } catch {
                throw StartupError("\(error)")
            }
            for name in BackupArchive.sweepLeftovers(in: config.dataDirectory) {
                logger.notice("removed an unfinished backup's scratch files", metadata: ["name": "\(name)"])
            }
            let app = try await buildApplication(config, logger: logger)
            try await app.run()
            withExtendedLifetime(lock) {}
        } catch let error as StartupError {
            logger.critical("cannot start: \(error.description)")
            throw ExitCode(1)
        } catch let error as NewerDataFormat {
            logger.critical("cannot start: \(error.description)")
            throw ExitCode(newerDataExitCode)
        } catch let error as NewerClusterFormat {
            logger.critical("cannot start: \(error.description)")
            throw ExitCode(newerDataExitCode)
        }
    }
}

/// `--data-dir` and `--config` of the console commands (export, reset-password, backup, restore).
struct DataDirectoryOptions: ParsableArguments {
    @Option(
        name: .customLong("data-dir"),
        help: "Data directory (default: the configured one, else /var/lib/tally if present, else ./.tally-data).")
    var dataDir: String?
    @Option(help: "Configuration file.")
    var config: String?

    func directory() throws -> String { try dataDirectory(dataDir, config: config) }
}

/// Reads the data directory from --data-dir, the configuration file or the environment, as
/// `serve` would, for the offline commands.
func dataDirectory(_ option: String?, config: String?) throws -> String {
    if let option { return option }
    let settings = try Settings.layered(config: config, environment: ProcessInfo.processInfo.environment, defaultFile: defaultConfigFile)
    // On the appliance the unit passes the service's state directory on its own command line, not
    // in the configuration: staff at the console mean that one.
    if settings.values["data-dir"] == nil {
        if FileManager.default.fileExists(atPath: serviceDataDirectory) { return serviceDataDirectory }
        // Installed from the package but never started: systemd makes the state directory (as the
        // service's own user) at the first start. Writing a stray ./.tally-data instead would look
        // like success and leave the box empty.
        if FileManager.default.fileExists(atPath: "/lib/systemd/system/tally.service") {
            throw ValidationError(
                "\(serviceDataDirectory) does not exist yet: start the service once (sudo systemctl start tally), stop it, and run this again — or pass --data-dir"
            )
        }
    }
    return try settings.configuration().0.dataDirectory
}

/// The packaged service's data (`StateDirectory=tally`).
let serviceDataDirectory = "/var/lib/tally"

/// For the offline commands: the files they create (SQLite's -wal/-shm) are private whatever the
/// umask of the shell they run from, and a directory an older version left readable is repaired,
/// as `serve` does at start.
func keepDataPrivate(_ directory: String) throws {
    DataDirectory.keepNewFilesPrivate()
    do {
        for change in try DataDirectory.makePrivate(directory, create: false) {
            FileHandle.standardError.write(Data("notice: permissions tightened in the data directory: \(change)\n".utf8))
        }
    } catch {
        throw ValidationError("\(error)")
    }
}

/// `tally reset-password`: for staff at the console who lost the operator password.
struct ResetPassword: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset-password",
        abstract: "Set a new operator password (takes effect at once, also while the server runs).")

    @OptionGroup var data: DataDirectoryOptions
    @Flag(name: .customLong("password-stdin"), help: "Read the new password from standard input instead of prompting.")
    var passwordStdin = false
    @Option(help: "A cluster's PostgreSQL instead of a data directory, postgresql://user@host:port/database.")
    var store: String?
    @Option(name: .customLong("store-password-file"), help: "File holding the PostgreSQL password (or set TALLY_STORE_PASSWORD).")
    var storePasswordFile: String?

    func run() async throws {
        if let store {
            // A cluster: the password hash and the sign-in epoch are the cluster's, in PostgreSQL;
            // every instance hears of the change at once.
            let address = try clusterAddress(store, passwordFile: storePasswordFile)
            let password = try newPassword()
            var logger = Logger(label: "tally-reset-password")
            logger.logLevel = .warning
            let cluster = ClusterStore(address: address, logger: logger)
            let pool = Task { await cluster.run() }
            defer { pool.cancel() }
            do {
                let settings = ClusterSettings(store: cluster, initial: try await cluster.settings())
                try await settings.setSetting("operator_password", to: try PasswordHash.make(password: password).encoded)
                try await revokeOperatorSignIns(in: settings)
            } catch {
                throw ValidationError("could not change the password in \(address): \(ClusterStore.describe(error))")
            }
            print("Operator password changed for the cluster at \(address); every earlier operator sign-in has ended.")
            return
        }
        let directory = try data.directory()
        let path = DataDirectory.databasePath(in: directory)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no Tally data in \(directory) (looked for \(path)); pass --data-dir")
        }
        try keepDataPrivate(directory)
        let password = try newPassword()
        let projection = try SQLiteProjection(path: path)
        try projection.setSetting("operator_password", to: try PasswordHash.make(password: password).encoded)
        try await revokeOperatorSignIns(in: projection)
        print(
            "Operator password changed in \(directory); every earlier operator sign-in has ended. Sign in at /presenter with the new one.")
    }

    private func newPassword() throws -> String {
        let password: String
        if passwordStdin {
            password = readLine(strippingNewline: true) ?? ""
        } else {
            guard let first = getpass("New operator password: ").map({ String(cString: $0) }),
                let second = getpass("Again: ").map({ String(cString: $0) })
            else { throw ValidationError("no terminal to read the password from; use --password-stdin") }
            guard first == second else { throw ValidationError("the two passwords differ; nothing changed") }
            password = first
        }
        if let problem = OperatorPassword.problem(with: password) {
            throw ValidationError("the operator password \(problem); nothing changed")
        }
        return password
    }
}

/// A cluster's PostgreSQL from a console command's options (the password from a file or
/// TALLY_STORE_PASSWORD, never the URL).
func clusterAddress(_ url: String, passwordFile: String?) throws -> StoreAddress {
    let password: String?
    if let file = passwordFile {
        do {
            password = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .newlines)
        } catch {
            throw ValidationError("cannot read \(file): \(error.localizedDescription)")
        }
    } else {
        password = ProcessInfo.processInfo.environment["TALLY_STORE_PASSWORD"]
    }
    do {
        return try StoreAddress(url: url, password: password)
    } catch {
        throw ValidationError(error.description)
    }
}

/// `tally export`: a session's results, e.g. onto a USB stick.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a session's results as CSV or JSON.")

    @Option(help: "Session id (see the presenter page), or its join code.")
    var session: String
    @Option(help: "csv or json.")
    var format: String = "csv"
    @Option(name: .shortAndLong, help: "Output file (default: standard output).")
    var output: String?
    @OptionGroup var data: DataDirectoryOptions
    @Flag(
        name: .customLong("link-participants"),
        help:
            "JSON: one pseudonym per participant for the whole session, so their ballots can be matched across polls (default: a different pseudonym in each poll)."
    )
    var linkParticipants = false

    func run() throws {
        guard ["csv", "json"].contains(format) else { throw ValidationError("format must be csv or json; got \"\(format)\"") }
        let directory = try data.directory()
        let path = DataDirectory.databasePath(in: directory)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no Tally data in \(directory) (looked for \(path)); pass --data-dir")
        }
        try keepDataPrivate(directory)
        // The projection trails the ring by a fraction of a second while the server runs.
        let projection = try SQLiteProjection(path: path)
        let sessions = try projection.load()
        guard let found = sessions.first(where: { $0.state.id == session || $0.state.joinCode.value == session.uppercased() }) else {
            throw ValidationError(
                "no session \"\(session)\" in \(directory); sessions: \(sessions.map { "\($0.state.id) (\($0.state.title))" }.joined(separator: ", "))"
            )
        }
        // The server's secret keys the pseudonyms, so this file names participants as the
        // presenter's download does.
        guard let secret = try storedApplianceSecret(projection) else {
            throw ValidationError("no signing secret in \(directory): start `tally serve` with it once")
        }
        let data =
            format == "csv"
            ? Data(SessionExport.csv(found.state).utf8)
            : SessionExport.json(
                found.state, times: try projection.ballotTimes(session: found.state.id),
                pseudonyms: Credentials(secret: secret).pseudonyms(linkParticipants ? .linked : .perPoll))
        if let output {
            try data.write(to: URL(fileURLWithPath: output))
            FileHandle.standardError.write(Data("Wrote \(found.state.polls.count) polls of \"\(found.state.title)\" to \(output)\n".utf8))
        } else {
            FileHandle.standardOutput.write(data)
        }
    }
}
