import ArgumentParser
import Foundation
import Logging
import TallyDiscovery
import TallyEventLog
import TallyServer

@main
struct Tally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Live polling for a room full of phones, served from a box at the venue.",
        version: TallyConfiguration.version,
        subcommands: [Serve.self, Discover.self],
        defaultSubcommand: Serve.self)
}

/// `tally serve`: run the appliance. Every option also reads a `TALLY_*` environment variable;
/// the command line wins over the environment, which wins over the default.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Tally server.")

    @Option(help: "Address to listen on (env TALLY_HOST). Default 0.0.0.0: every interface.")
    var host: String?

    @Option(help: "TCP port (env TALLY_PORT). Default 8080.")
    var port: Int?

    @Option(name: .customLong("data-dir"), help: "Directory for the database and secret (env TALLY_DATA_DIR). Default ./.tally-data.")
    var dataDir: String?

    @Option(
        name: .customLong("operator-password"),
        help: "Operator password (env TALLY_OPERATOR_PASSWORD). Without it, the stored one or first-run set-up is used.")
    var operatorPassword: String?

    @Option(help: "fsync (default: acknowledged votes survive a power cut) or os (survive a crash of the process) (env TALLY_DURABILITY).")
    var durability: String?

    @Option(name: .customLong("public-url"), help: "URL participants use to reach this box, for join links and QR codes, e.g. http://tally.local (env TALLY_PUBLIC_URL).")
    var publicURL: String?

    @Option(help: "Name advertised over mDNS (env TALLY_NAME). Default \"Tally on <hostname>\".")
    var name: String?

    @Flag(name: .customLong("no-mdns"), help: "Do not advertise over mDNS (env TALLY_MDNS=0).")
    var noMDNS = false

    @Option(name: .customLong("ring-size"), help: "Size of the event ring file, e.g. 1GiB, 256MiB (env TALLY_RING_SIZE). Default 1GiB.")
    var ringSize: String?

    @Option(name: .customLong("retention-hours"), help: "How long events are replayable, capacity permitting (env TALLY_RETENTION_HOURS). Default 24.")
    var retentionHours: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env TALLY_LOG_LEVEL). Default info.")
    var logLevel: String?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        var config = TallyConfiguration()
        config.host = host ?? env["TALLY_HOST"] ?? config.host
        if let text = port.map(String.init) ?? env["TALLY_PORT"] {
            guard let value = Int(text), (0...65535).contains(value) else {
                throw ValidationError("port must be a number from 0 to 65535, got \"\(text)\"")
            }
            config.port = value
        }
        config.dataDirectory = dataDir ?? env["TALLY_DATA_DIR"] ?? config.dataDirectory
        config.operatorPassword = operatorPassword ?? env["TALLY_OPERATOR_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if let text = durability ?? env["TALLY_DURABILITY"] {
            guard let value = Durability(rawValue: text) else {
                throw ValidationError("durability must be fsync or os, got \"\(text)\"")
            }
            config.durability = value
        }
        config.name = name ?? env["TALLY_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        if let name = config.name, name.utf8.count > 63 {
            throw ValidationError("name must be at most 63 bytes (an mDNS label); got \(name.utf8.count)")
        }
        if noMDNS { config.mdns = false } else if let text = env["TALLY_MDNS"] {
            guard ["0", "1", "true", "false", "yes", "no"].contains(text.lowercased()) else {
                throw ValidationError("TALLY_MDNS must be 1 or 0; got \"\(text)\"")
            }
            config.mdns = ["1", "true", "yes"].contains(text.lowercased())
        }
        if let text = publicURL ?? env["TALLY_PUBLIC_URL"] {
            guard let url = URL(string: text), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ValidationError("public URL must look like http://tally.local or http://192.168.4.1:8080; got \"\(text)\"")
            }
            config.publicURL = text
        }
        if let text = ringSize ?? env["TALLY_RING_SIZE"] {
            guard let bytes = parseSize(text) else {
                throw ValidationError("ring size must look like 1GiB, 256MiB or a number of bytes; got \"\(text)\"")
            }
            guard bytes >= 1 << 20, bytes <= 1 << 36, bytes % 4096 == 0 else {
                throw ValidationError("ring size must be a multiple of 4 KiB from 1 MiB to 64 GiB; got \(text)")
            }
            config.ringSize = bytes
        }
        if let text = retentionHours ?? env["TALLY_RETENTION_HOURS"] {
            guard let hours = Double(text), hours > 0, hours <= 24 * 365 else {
                throw ValidationError("retention hours must be a number above 0; got \"\(text)\"")
            }
            config.retention = hours * 3600
        }
        let levelText = logLevel ?? env["TALLY_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: levelText) else {
            throw ValidationError("log level must be one of trace, debug, info, notice, warning, error, critical; got \"\(levelText)\"")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tally")
        do {
            let app = try buildApplication(config, logger: logger)
            try await app.run()
        } catch let error as StartupError {
            logger.critical("cannot start: \(error.description)")
            throw ExitCode(1)
        }
    }
}

/// `tally discover`: lists the Tally appliances on the network (what a kiosk display runs at boot).
struct Discover: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Find Tally appliances on the local network over mDNS.")

    @Option(help: "Seconds to listen.")
    var timeout: Double = 3

    @Flag(help: "One JSON object per appliance.")
    var json = false

    @Flag(help: "Print only the first appliance's display URL (for scripts).")
    var url = false

    func run() throws {
        let found: [DiscoveredAppliance]
        do {
            found = try ApplianceBrowser.discover(timeout: timeout)
        } catch {
            FileHandle.standardError.write(Data("tally discover: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if url {
            guard let first = found.first else { throw ExitCode(1) }
            print(first.url)
            return
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for appliance in found { print(String(decoding: try encoder.encode(appliance), as: UTF8.self)) }
        } else if found.isEmpty {
            print("No Tally appliance found within \(timeout) s.")
        } else {
            for a in found {
                let txt = a.txt.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                print("\(a.name)\t\(a.address):\(a.port)\t\(a.url)\t\(txt)")
            }
        }
        if found.isEmpty { throw ExitCode(1) }
    }
}

/// "1GiB", "256MiB", "64KiB", "1G", "4096" → bytes.
func parseSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        guard let n = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
    return Int(trimmed)
}
