import Foundation
import Synchronization
import TallyEventLog

/// The settings every instance shares (the operator password hash, the signing secrets, the
/// sign-in epoch and revocations), held in PostgreSQL and cached here: reads are answered
/// from memory (a sign-in check must not wait for the database), writes go to PostgreSQL
/// first and notify the other instances, which re-read the key.
public final class ClusterSettings: SettingsStore {
    let store: ClusterStore
    private let cache: Mutex<[String: String]>
    private let reloading = Mutex<(running: Bool, again: Bool)>((false, false))

    public init(store: ClusterStore, initial: [String: String]) {
        self.store = store
        self.cache = Mutex(initial)
    }

    public func setting(_ key: String) throws -> String? {
        cache.withLock { $0[key] }
    }

    public func setSetting(_ key: String, to value: String) async throws {
        try await store.setSetting(key, to: value)
        cache.withLock { $0[key] = value }
    }

    public func updateSetting(_ key: String, _ transform: @escaping @Sendable (String?) -> String) async throws -> String {
        let value = try await store.updateSetting(key, transform)
        cache.withLock { $0[key] = value }
        return value
    }

    /// Re-reads every setting (another instance changed one, or the notification may have been
    /// missed while the listener reconnected).
    public func reload() async throws {
        // One read at a time, the newest last: a slow older read finishing after a newer one
        // would bring back a sign-out's earlier state.
        guard
            reloading.withLock({ state in
                if state.running {
                    state.again = true
                    return false
                }
                state.running = true
                return true
            })
        else { return }
        defer { reloading.withLock { $0.running = false } }
        while true {
            let fresh = try await store.settings()
            cache.withLock { $0 = fresh }
            let again = reloading.withLock { state in
                defer { state.again = false }
                return state.again
            }
            if !again { return }
        }
    }
}
