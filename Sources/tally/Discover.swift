import ArgumentParser
import Foundation
import TallyDiscovery

/// `tally discover`: lists the Tally appliances on the network (what a kiosk display runs at boot).
/// Anyone on the Wi-Fi can advertise `_tally._tcp`, so `--url` never guesses: see `Roster`.
struct Discover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find Tally appliances on the local network over mDNS.",
        discussion: """
            Exit status: 0 found; 1 none (or not the pinned one); 2 avahi-daemon unreachable; \
            3 (--url) several appliances answer and none is pinned; \
            4 (--url) the pinned id is advertised by more than one host (an impostor).
            """)

    /// Exit statuses a kiosk script can tell apart.
    enum Status {
        static let noneFound: Int32 = 1
        static let unreachable: Int32 = 2
        static let several: Int32 = 3
        static let impostor: Int32 = 4
    }

    @Option(help: "Seconds to listen.")
    var timeout: Double = 3
    @Option(name: .customLong("appliance-id"), help: "Only this appliance (its id, as listed): every other advertiser is ignored.")
    var applianceID: String?
    @Flag(help: "One JSON object per appliance.")
    var json = false
    @Flag(help: "Print only the display URL of the one appliance (pinned, or the only one seen), for scripts.")
    var url = false

    func validate() throws {
        if let applianceID, !ApplianceID.isWellFormed(applianceID) {
            throw ValidationError(
                "--appliance-id must be an id as `tally discover` lists it (letters, digits, - or _), got \"\(applianceID)\"")
        }
    }

    func run() throws {
        let roster: Roster
        do {
            roster = Roster(try ApplianceBrowser.discover(timeout: timeout))
        } catch {
            complain("\(error)")
            throw ExitCode(Status.unreachable)
        }
        if url {
            switch roster.choose(pinnedTo: applianceID) {
            case .found(let appliance):
                print(appliance.url)
            case .none:
                if let applianceID { complain("appliance \(applianceID) not found within \(timeout) s\(seen(roster.appliances))") }
                throw ExitCode(Status.noneFound)
            case .several(let appliances):
                complain(
                    "\(appliances.count) appliances answer; not choosing one (any phone on the network can advertise itself). "
                        + "Pin this display to one with --appliance-id ID (TALLY_KIOSK_APPLIANCE_ID in tally-kiosk.service):\n"
                        + appliances.map { "  " + line($0, in: roster) }.joined(separator: "\n"))
                throw ExitCode(Status.several)
            case .impostor(let id, let appliances):
                complain(
                    "appliance id \(id) is advertised by \(appliances.count) different hosts: all but one are impostors, "
                        + "and mDNS cannot tell which; not choosing any:\n"
                        + appliances.map { "  " + line($0, in: roster) }.joined(separator: "\n"))
                throw ExitCode(Status.impostor)
            }
            return
        }
        let shown = applianceID.map { id in roster.appliances.filter { $0.id == id } } ?? roster.appliances
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for appliance in shown {
                print(String(decoding: try encoder.encode(Listed(appliance, contested: roster.isContested(appliance))), as: UTF8.self))
            }
        } else if shown.isEmpty {
            print("No Tally appliance\(applianceID.map { " with id \($0)" } ?? "") found within \(timeout) s.")
        } else {
            for appliance in shown { print(line(appliance, in: roster)) }
        }
        if shown.isEmpty { throw ExitCode(Status.noneFound) }
    }

    /// One appliance as `tally discover --json` prints it.
    struct Listed: Encodable {
        let name, host, address, url: String
        let port: Int
        let id: String?
        let txt: [String: String]
        /// Another host advertises the same id: one of them is an impostor.
        let contested: Bool

        init(_ a: DiscoveredAppliance, contested: Bool) {
            name = a.name
            host = a.host
            address = a.address
            url = a.url
            port = a.port
            id = a.id
            txt = a.txt
            self.contested = contested
        }
    }

    /// Name, id, address, URL, TXT (and a warning for a contested id), tab-separated. Whatever an
    /// advertiser sent is shown with control characters escaped: it is someone else's text on
    /// this terminal.
    private func line(_ a: DiscoveredAppliance, in roster: Roster) -> String {
        let txt = a.txt.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        var fields = [a.name, "id=" + (a.id ?? "(none)"), "\(a.address):\(a.port)", a.url, txt]
        if let id = a.id, roster.isContested(a) {
            fields.append("IMPOSTOR? id \(id) is advertised by \(roster.origins(of: id).count) hosts")
        }
        return fields.map(printable).joined(separator: "\t")
    }

    private func seen(_ appliances: [DiscoveredAppliance]) -> String {
        appliances.isEmpty ? "" : "; seen: " + appliances.map { printable("\($0.name) (id \($0.id ?? "none"))") }.joined(separator: ", ")
    }

    private func complain(_ message: String) {
        FileHandle.standardError.write(Data("tally discover: \(message)\n".utf8))
    }
}

/// Text from the network, safe to print: control characters (escape sequences, newlines, tabs)
/// are shown as `\u{…}` instead of acting on the terminal.
func printable(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        if scalar.properties.generalCategory == .control {
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}
