import Testing

@testable import TallyCluster

@Suite("Where the cluster's PostgreSQL is")
struct StoreAddressTests {
    @Test func aPlainURLNamesHostPortUserAndDatabase() throws {
        let address = try StoreAddress(url: "postgresql://tally@db.venue.lan:6543/tally?sslmode=require", password: "s3cret")
        #expect(address.host == "db.venue.lan" && address.port == 6543)
        #expect(address.username == "tally" && address.database == "tally" && address.tls == .require)
        #expect(address.password == "s3cret")
        #expect(address.description == "postgresql://tally@db.venue.lan:6543/tally", "logs never carry the password")
        #expect(try StoreAddress(url: "postgres://u@h/d").port == 5432, "the default port, and the short scheme")
        #expect(try StoreAddress(url: "postgres://u@h/d").tls == .prefer)
    }

    /// A password on the command line ends up in `ps`, shell histories and the unit's journal.
    @Test func aPasswordInTheURLIsRefusedWithWhereToPutIt() {
        #expect {
            try StoreAddress(url: "postgresql://tally:hunter2@db/tally")
        } throws: { error in
            "\(error)".contains("store-password-file") && !"\(error)".contains("hunter2")
        }
    }

    @Test func whatIsMissingIsNamed() {
        for (url, words) in [
            ("mysql://u@h/d", "postgresql://"), ("postgresql://h/d", "no user"), ("postgresql://u@h", "no database"),
            ("postgresql://u@h/d?sslmode=maybe", "sslmode"), ("postgresql://u@h/d?application_name=x", "only sslmode"),
        ] {
            #expect(throws: StoreAddressError.self, "\(url)") { try StoreAddress(url: url) }
            #expect((try? StoreAddress(url: url)) == nil)
            do {
                _ = try StoreAddress(url: url)
            } catch {
                #expect(error.description.contains(words), "\(url): \(error.description)")
            }
        }
    }
}
