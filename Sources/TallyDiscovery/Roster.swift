/// Everything `tally discover` saw, and the one decision a kiosk makes from it: which appliance
/// goes on the projector. Pure, so the rules are tested without a network.
///
/// The rules, because anyone on the Wi-Fi can advertise `_tally._tcp`:
/// - pinned to an id, every advertiser of another id is ignored;
/// - an id claimed by two advertisers means one of them is an impostor — nobody can tell which
///   from mDNS alone, so the kiosk refuses both rather than guess;
/// - unpinned, several appliances are never settled by picking one (the first by name is the
///   one a phone named "AAA" would win).
public struct Roster: Sendable {
    /// Sorted by name, then address.
    public let appliances: [DiscoveredAppliance]

    public init(_ appliances: [DiscoveredAppliance]) {
        self.appliances = appliances.sorted { ($0.name, $0.address, $0.port) < ($1.name, $1.address, $1.port) }
    }

    /// The distinct advertisers of `id` (an appliance on two interfaces is one).
    public func origins(of id: String) -> [DiscoveredAppliance.Origin] {
        var seen: [DiscoveredAppliance.Origin] = []
        for appliance in appliances where appliance.id == id && !seen.contains(appliance.origin) {
            seen.append(appliance.origin)
        }
        return seen
    }

    /// Whether another advertiser claims this appliance's id too.
    public func isContested(_ appliance: DiscoveredAppliance) -> Bool {
        guard let id = appliance.id else { return false }
        return origins(of: id).count > 1
    }

    public enum Choice: Sendable, Equatable {
        /// Exactly one appliance fits: show it.
        case found(DiscoveredAppliance)
        /// Nothing fits (yet).
        case none
        /// Unpinned, and more than one appliance answers: one per advertiser.
        case several([DiscoveredAppliance])
        /// The pinned id is advertised by more than one advertiser: one per advertiser.
        case impostor(id: String, [DiscoveredAppliance])
    }

    /// What a kiosk should open. Only advertisements with a well-formed `id` are candidates: a
    /// Tally appliance always sends one.
    public func choose(pinnedTo pinned: String?) -> Choice {
        let candidates = appliances.filter { appliance in
            guard let id = appliance.id else { return false }
            return pinned == nil || id == pinned
        }
        var byOrigin: [DiscoveredAppliance] = []
        for appliance in candidates where !byOrigin.contains(where: { $0.origin == appliance.origin }) {
            byOrigin.append(appliance)
        }
        switch (byOrigin.count, pinned) {
        case (0, _): return .none
        case (1, _): return .found(byOrigin[0])
        case (_, let id?): return .impostor(id: id, byOrigin)
        case (_, nil): return .several(byOrigin)
        }
    }
}
