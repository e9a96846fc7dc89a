import CAvahi
import Foundation
import Logging

/// What the appliance advertises over mDNS.
public struct Advertisement: Sendable, Equatable {
    /// Instance name, e.g. "Tally on stage-left". Avahi may pick an alternative on a collision.
    public var name: String
    public var port: Int
    /// TXT records of `_tally._tcp` ("key=value").
    public var txt: [String]

    public init(name: String, port: Int, txt: [String]) {
        self.name = name
        self.port = port
        self.txt = txt
    }
}

/// Publishes `_tally._tcp` (with TXT) and `_http._tcp` (path=/) through avahi-daemon.
///
/// Lifecycle as avahi-publish -f and MPD do it: the client is created with
/// `AVAHI_CLIENT_NO_FAIL`, so it waits for a daemon that is absent or restarting; the entry
/// group is registered when the client is RUNNING, reset on a host-name change, re-registered
/// under avahi's alternative name on a collision; after `AVAHI_ERR_DISCONNECTED` the client is
/// freed and a new one made on a timer.
///
/// Thread safety: avahi calls back on its own thread (the threaded poll) with its lock held.
/// Every field below is touched only there, or from `start`/`stop` while holding that lock —
/// hence `@unchecked Sendable`. Callbacks find this object through an unretained pointer that
/// stays valid because `stop()` frees the client and group (and stops the thread) before the
/// object can go away.
public final class Advertiser: @unchecked Sendable {
    private let logger: Logger
    private var advertisement: Advertisement
    private var poll: OpaquePointer?
    private var client: OpaquePointer?
    private var group: OpaquePointer?
    private var reconnect: OpaquePointer?
    private var warnedNoDaemon = false
    private var published = false
    private var onPublished: (@Sendable (String) -> Void)?
    /// What the operator's console shows: advertised or not, and why.
    private let status: AdvertisingStatus

    public init(
        _ advertisement: Advertisement, logger: Logger, status: AdvertisingStatus? = nil, onPublished: (@Sendable (String) -> Void)? = nil
    ) {
        self.advertisement = advertisement
        self.logger = logger
        self.status = status ?? AdvertisingStatus(.init(phase: .starting, name: advertisement.name))
        self.onPublished = onPublished
    }

    /// The name currently used (after any collision).
    public var currentName: String {
        guard let poll else { return advertisement.name }
        avahi_threaded_poll_lock(poll)
        defer { avahi_threaded_poll_unlock(poll) }
        return advertisement.name
    }

    public func start() throws {
        guard let poll = avahi_threaded_poll_new() else { throw DiscoveryError("cannot create the avahi event loop") }
        self.poll = poll
        avahi_threaded_poll_lock(poll)
        makeClient()
        avahi_threaded_poll_unlock(poll)
        guard avahi_threaded_poll_start(poll) == 0 else { throw DiscoveryError("cannot start the avahi thread") }
    }

    /// Withdraws the advertisement (peers see it go) and stops the avahi thread.
    public func stop() {
        guard let poll else { return }
        avahi_threaded_poll_lock(poll)
        if let reconnect { avahi_threaded_poll_get(poll).pointee.timeout_free(reconnect) }
        reconnect = nil
        if let group { avahi_entry_group_free(group) }  // sends goodbye packets
        group = nil
        if let client { avahi_client_free(client) }
        client = nil
        avahi_threaded_poll_unlock(poll)
        avahi_threaded_poll_stop(poll)
        avahi_threaded_poll_free(poll)
        self.poll = nil
        status.set(.withdrawn, reason: "the appliance is shutting down")
        if published { logger.info("mDNS: advertisement withdrawn", metadata: ["name": "\(advertisement.name)"]) }
    }

    // MARK: on the avahi thread (or under its lock)

    private var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private func makeClient() {
        guard let poll else { return }
        var error: Int32 = 0
        let made = avahi_client_new(
            avahi_threaded_poll_get(poll), AVAHI_CLIENT_NO_FAIL,
            { client, state, userdata in
                guard let userdata, let client else { return }
                Unmanaged<Advertiser>.fromOpaque(userdata).takeUnretainedValue().clientChanged(client, state)
            }, opaque, &error)
        if made == nil {
            status.set(.unreachable, reason: "avahi-daemon cannot be reached (\(String(cString: avahi_strerror(error))))")
            // No D-Bus or no daemon at all: say so once, keep trying quietly.
            if !warnedNoDaemon {
                warnedNoDaemon = true
                logger.notice(
                    "mDNS: not advertising (avahi-daemon unreachable); serving anyway and will advertise when it appears",
                    metadata: ["error": "\(String(cString: avahi_strerror(error)))"])
            }
            scheduleReconnect()
        } else {
            client = made
        }
    }

    /// Note: with no daemon, avahi calls this *inside* `avahi_client_new` (state CONNECTING),
    /// before `client` is set: always use the `client` argument here.
    fileprivate func clientChanged(_ client: OpaquePointer, _ state: AvahiClientState) {
        switch state {
        case AVAHI_CLIENT_S_RUNNING:
            warnedNoDaemon = false
            status.set(.starting, reason: "avahi is registering the advertisement")
            register(client)
        case AVAHI_CLIENT_S_COLLISION, AVAHI_CLIENT_S_REGISTERING:
            // The host name changed or collided: withdraw until the client is RUNNING again.
            status.set(.starting, reason: "the host name changed or collided; avahi is registering it again")
            if let group { avahi_entry_group_reset(group) }
        case AVAHI_CLIENT_CONNECTING:
            status.set(.unreachable, reason: "avahi-daemon is not running")
            if !warnedNoDaemon {
                warnedNoDaemon = true
                logger.notice("mDNS: not advertising (avahi-daemon is not running); serving anyway and will advertise when it appears")
            }
        case AVAHI_CLIENT_FAILURE:
            let error = avahi_client_errno(client)
            status.set(
                .unreachable,
                reason: error == AVAHI_ERR_DISCONNECTED
                    ? "avahi-daemon went away; reconnecting" : "the avahi client failed (\(String(cString: avahi_strerror(error))))")
            if error == AVAHI_ERR_DISCONNECTED {
                logger.notice("mDNS: avahi-daemon went away; reconnecting")
            } else {
                logger.warning("mDNS: avahi client failed; reconnecting", metadata: ["error": "\(String(cString: avahi_strerror(error)))"])
            }
            // The client (and its group) are dead: free them and make a new client shortly.
            if let group { avahi_entry_group_free(group) }
            group = nil
            avahi_client_free(client)
            if self.client == client { self.client = nil }
            scheduleReconnect()
        default:
            break
        }
    }

    private func scheduleReconnect() {
        guard let poll, reconnect == nil else { return }
        var when = timeval()
        avahi_elapse_time(&when, 1000, 0)
        let api = avahi_threaded_poll_get(poll)
        reconnect = api?.pointee.timeout_new(
            api, &when,
            { _, userdata in
                guard let userdata else { return }
                let advertiser = Unmanaged<Advertiser>.fromOpaque(userdata).takeUnretainedValue()
                if let timer = advertiser.reconnect, let poll = advertiser.poll {
                    avahi_threaded_poll_get(poll).pointee.timeout_free(timer)
                }
                advertiser.reconnect = nil
                advertiser.makeClient()
            }, opaque)
    }

    private func register(_ client: OpaquePointer) {
        if group == nil {
            group = avahi_entry_group_new(
                client,
                { group, state, userdata in
                    guard let userdata, let group else { return }
                    Unmanaged<Advertiser>.fromOpaque(userdata).takeUnretainedValue().groupChanged(group, state)
                }, opaque)
            guard group != nil else {
                logger.warning(
                    "mDNS: cannot create an entry group",
                    metadata: ["error": "\(String(cString: avahi_strerror(avahi_client_errno(client))))"])
                return
            }
        }
        guard let group, avahi_entry_group_is_empty(group) != 0 else { return }
        var txt: UnsafeMutablePointer<AvahiStringList>? = nil
        for record in advertisement.txt.reversed() { txt = avahi_string_list_add(txt, record) }
        let http = avahi_string_list_add(nil, "path=/")
        defer {
            avahi_string_list_free(txt)
            avahi_string_list_free(http)
        }
        let port = UInt16(advertisement.port)
        var result = avahi_entry_group_add_service_strlst(
            group, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), AvahiPublishFlags(0), advertisement.name,
            "_tally._tcp", nil, nil, port, txt)
        if result == 0 {
            result = avahi_entry_group_add_service_strlst(
                group, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), AvahiPublishFlags(0), advertisement.name,
                "_http._tcp", nil, nil, port, http)
        }
        if result == AVAHI_ERR_COLLISION {
            rename(group)
            return
        }
        if result == 0 { result = avahi_entry_group_commit(group) }
        if result != 0 {
            status.set(.failed, reason: "avahi would not publish the records (\(String(cString: avahi_strerror(result))))")
            logger.warning("mDNS: cannot publish", metadata: ["error": "\(String(cString: avahi_strerror(result)))"])
        }

    }

    fileprivate func groupChanged(_ group: OpaquePointer, _ state: AvahiEntryGroupState) {
        switch state {
        case AVAHI_ENTRY_GROUP_ESTABLISHED:
            published = true
            status.set(.advertised, name: advertisement.name)
            // The id is what a kiosk is pinned to (`tally discover --appliance-id`): say it here.
            logger.info(
                "mDNS: advertised",
                metadata: [
                    "name": "\(advertisement.name)", "type": "_tally._tcp, _http._tcp", "port": "\(advertisement.port)",
                    "id": "\(TXTRecord.parse(advertisement.txt)["id"] ?? "none")",
                ])
            onPublished?(advertisement.name)
        case AVAHI_ENTRY_GROUP_COLLISION:
            rename(group)
        case AVAHI_ENTRY_GROUP_FAILURE:
            let client = avahi_entry_group_get_client(group)
            status.set(.failed, reason: "the advertisement failed (\(String(cString: avahi_strerror(avahi_client_errno(client)))))")
            logger.warning(
                "mDNS: advertisement failed", metadata: ["error": "\(String(cString: avahi_strerror(avahi_client_errno(client))))"])
        default:
            break
        }
    }

    /// Another service on the network has our name: take the alternative avahi proposes
    /// ("Tally on x #2") and publish again.
    private func rename(_ group: OpaquePointer) {
        if let alternative = avahi_alternative_service_name(advertisement.name) {
            let old = advertisement.name
            advertisement.name = String(cString: alternative)
            avahi_free(alternative)
            status.set(
                .starting, name: advertisement.name, reason: "the name was taken on this network; publishing as \(advertisement.name)")
            logger.notice(
                "mDNS: name already taken on this network; using an alternative",
                metadata: ["was": "\(old)", "now": "\(advertisement.name)"])
        }
        avahi_entry_group_reset(group)
        if let client = avahi_entry_group_get_client(group) { register(client) }
    }
}

public struct DiscoveryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
