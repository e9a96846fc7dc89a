import Synchronization

/// Whether the appliance is advertised over mDNS right now, and if not, why — for the
/// operator's console. The advertiser writes it from avahi's thread; anyone may read it.
public final class AdvertisingStatus: Sendable {
    /// Where the advertisement stands.
    public enum Phase: String, Sendable {
        /// `--no-mdns`: advertising is off by choice (not a fault).
        case disabled
        /// The listener is not bound yet, or avahi is registering the records.
        case starting
        /// Published: phones and kiosks browsing `_tally._tcp` see the box.
        case advertised
        /// avahi-daemon (or D-Bus) cannot be reached; the advertiser keeps trying.
        case unreachable
        /// avahi refused the records (see the reason); the advertiser keeps trying.
        case failed
        /// Withdrawn at shutdown.
        case withdrawn
    }

    public struct State: Sendable, Equatable {
        public var phase: Phase
        /// The instance name in use (avahi may have chosen an alternative after a collision).
        public var name: String
        /// Why it is not advertised, in words (nil when advertised).
        public var reason: String?

        public init(phase: Phase, name: String, reason: String? = nil) {
            self.phase = phase
            self.name = name
            self.reason = reason
        }
    }

    private let state: Mutex<State>

    public init(_ initial: State) {
        state = Mutex(initial)
    }

    public var current: State { state.withLock { $0 } }

    func set(_ phase: Phase, name: String? = nil, reason: String? = nil) {
        state.withLock { state in
            state.phase = phase
            if let name { state.name = name }
            state.reason = reason
        }
    }
}
