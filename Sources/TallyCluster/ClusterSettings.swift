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

    /// Re-reads every setting (another instance changed one, or the notification may have been
    /// missed while the listener reconnected).
    public func reload() async throws {
        let fresh = try await store.settings()
        cache.withLock { $0 = fresh }
    }
}
