import Foundation
import GRDB
import TallyDomain
import Testing

@testable import TallyEventLog

/// Upgrades: a data directory the previous release left is carried forward with everything in
/// it; one a newer release left is refused and not changed by a single byte.
@Suite struct UpgradeTests {
    let directory: URL
    var databasePath: String { directory.appendingPathComponent("tally.sqlite").path }
    var ringPath: String { directory.appendingPathComponent("events.ring").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// The previous release (format "v5: audience Q&A"): its tables, filled through SQL exactly
    /// as it wrote them — JSON without the quiz's fields, no quiz columns — with a WAL pool, as
    /// it opened the file.
    func writePreviousRelease() throws {
        let pool = try DatabasePool(path: databasePath)
        try SQLiteProjection.migrator().migrate(pool, upTo: "v5: audience Q&A")
        try pool.write { db in
            for (key, value) in [
                ("projected_through", "40"), ("secret", String(repeating: "ab", count: 32)),
                ("operator_password", "pbkdf2-sha256$210000$c2FsdA$aGFzaA"), ("operator_epoch", "3"), ("appliance_id", "box-1"),
            ] {
                try db.execute(sql: "INSERT INTO settings(key, value) VALUES (?, ?)", arguments: [key, value])
            }
            try db.execute(
                sql: """
                    INSERT INTO sessions(id, title, join_code, ended, created_seq, last_seq, joining_closed, presenter_link,
                        display_link, qna_state, qna_moderation, qna_anonymous, qna_highlighted)
                    VALUES ('s1', 'Town hall', 'K7QX2M', 0, 1, 40, 1, 2, 0, 'open', 'post', 1, 'q1'),
                           ('s0', 'Yesterday', 'ABCDEF', 1, 0, 0, 0, 0, 0, 'off', 'post', 1, NULL)
                    """)  // s0 was created first: sessions come back in creation order
            let polls: [(String, Int, String, String, Int)] = [
                (
                    "p1", 2,
                    #"{"id":"p1","question":"Ship it?","options":[{"id":"o1","label":"Yes"},{"id":"o2","label":"No"}],"kind":"single","resultsVisibility":"hidden","state":"draft","revealed":false}"#,
                    "closed", 1
                ),
                (
                    "p2", 9,
                    #"{"id":"p2","question":"How was it?","options":[],"kind":"scale","resultsVisibility":"live","state":"draft","revealed":false,"scale":{"min":1,"max":5}}"#,
                    "open", 0
                ),
                (
                    "p3", 12,
                    #"{"id":"p3","question":"Next topic?","options":[{"id":"o1","label":"A"},{"id":"o2","label":"B"}],"kind":"single","resultsVisibility":"live","state":"draft","revealed":false}"#,
                    "draft", 0
                ),
            ]
            for (id, position, definition, state, revealed) in polls {
                try db.execute(
                    sql: "INSERT INTO polls(session_id, poll_id, position, definition, state, revealed) VALUES ('s1', ?, ?, ?, ?, ?)",
                    arguments: [id, position, Data(definition.utf8), state, revealed])
            }
            for (i, participant) in ["a", "b", "c"].enumerated() {
                try db.execute(
                    sql: "INSERT INTO participants(session_id, participant_id, position) VALUES ('s1', ?, ?)",
                    arguments: [participant, 3 + i])
            }
            let ballots: [(String, String, String)] = [
                ("p1", "a", #"["o2"]"#), ("p1", "b", #"["o2"]"#), ("p1", "c", #"["o1"]"#),
                ("p2", "a", #"{"value":4}"#), ("p2", "c", #"{"value":5}"#),
            ]
            for (poll, participant, options) in ballots {
                try db.execute(
                    sql: "INSERT INTO ballots(session_id, poll_id, participant_id, options, at_ms) VALUES ('s1', ?, ?, ?, 1800000000000)",
                    arguments: [poll, participant, Data(options.utf8)])
            }
            let question =
                #"{"questionId":"q1","number":1,"author":"a","text":"When is lunch?","state":"visible","askedAt":"2027-01-15T08:00:00.000Z"}"#
            try db.execute(
                sql: "INSERT INTO questions(session_id, question_id, number, definition, state) VALUES ('s1', 'q1', 1, ?, 'visible')",
                arguments: [Data(question.utf8)])
            for voter in ["b", "c"] {
                try db.execute(
                    sql: "INSERT INTO upvotes(session_id, question_id, participant_id) VALUES ('s1', 'q1', ?)", arguments: [voter])
            }
        }
    }

    @Test func theDatabaseThePreviousReleaseLeftIsMigratedWithEverythingInIt() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        try writePreviousRelease()

        let projection = try SQLiteProjection(path: databasePath)
        let sessions = try projection.load()
        #expect(sessions.map(\.state.id) == ["s0", "s1"])
        #expect(sessions[0].state.lifecycle == .ended && sessions[0].state.title == "Yesterday")
        let session = sessions[1]
        let state = session.state
        #expect(state.title == "Town hall" && state.joinCode.value == "K7QX2M" && state.lifecycle == .active)
        #expect(session.lastSequence == 40)
        #expect(state.polls.map(\.id) == ["p1", "p2", "p3"])
        #expect(state.polls.map(\.state) == [.closed, .open, .draft] && state.openPollId == "p2")
        #expect(state.poll("p1")?.revealed == true && state.poll("p1")?.resultsVisibility == .hidden)
        #expect(state.participantCount == 3)
        #expect(state.results(of: "p1")?.counts?.map(\.count) == [1, 2])
        #expect(state.results(of: "p2")?.distribution?.filter { $0.count > 0 }.map(\.value) == [4, 5])
        #expect(state.ballot(of: "b", on: "p1") == .choice(["o2"]))
        #expect(!state.joiningOpen && state.linkGeneration(.presenter) == 2)
        #expect(state.qna.state == .open && state.qna.upvotes("q1") == 2 && state.qna.highlighted == "q1")
        #expect(state.qna.question("q1")?.text == "When is lunch?")
        // Nothing of the quiz's yet, and nobody signed out: the secret and password hash stay.
        #expect(!state.hasQuiz && state.nicknamePolicy == .optional)
        #expect(try projection.projectedThrough() == 40)
        #expect(try projection.setting("operator_password") == "pbkdf2-sha256$210000$c2FsdA$aGFzaA")
        #expect(try projection.setting("secret") == String(repeating: "ab", count: 32))

        // The migrated database takes the new release's facts: a nickname and a quiz ballot.
        try projection.apply([
            LoggedEvent(
                sequence: 41, sessionId: "s1", timestamp: Date(),
                event: .participantJoined(.init(participantId: "d", participantCount: 4, nickname: "Dee"))),
            LoggedEvent(
                sequence: 42, sessionId: "s1", timestamp: Date(),
                event: .ballotCast(.init(pollId: "p2", participantId: "d", ballot: .scale(3)))),
        ])
        let again = try #require(try SQLiteProjection(path: databasePath).load().last)
        #expect(again.state.participantCount == 4 && again.state.nickname(of: "d") == "Dee")
        #expect(again.state.results(of: "p2")?.distribution?.filter { $0.count > 0 }.map(\.value) == [3, 4, 5])
        #expect(again.lastSequence == 42)
    }

    @Test func aDatabaseFromANewerReleaseIsRefusedAndLeftUnchanged() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let projection = try SQLiteProjection(path: databasePath)
            try projection.setSetting("operator_password", to: "kept")
        }
        do {
            // What a newer Tally's migration leaves: its identifier, and a table this one lacks.
            let queue = try DatabaseQueue(path: databasePath)
            try queue.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('v7: from the future')")
                try db.execute(sql: "CREATE TABLE future (x)")
            }
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: databasePath))

        #expect {
            try SQLiteProjection(path: databasePath)
        } throws: { error in
            guard let newer = error as? NewerDataFormat else { return false }
            let message = newer.description
            return message.contains(directory.path) && message.contains("written by a newer version of Tally")
                && message.contains("\"v7: from the future\"") && message.contains("install that version of Tally or a newer one")
                && message.contains("Nothing in \(directory.path) has been changed")
        }
        #expect(throws: NewerDataFormat.self) { try DataFormat.refuseNewer(databasePath: databasePath, ringPath: ringPath) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: databasePath)) == before, "not a byte changed")
        #expect(!FileManager.default.fileExists(atPath: ringPath), "nothing created beside it")
    }

    @Test func aRingFromANewerReleaseIsRefusedAndLeftUnchanged() throws {
        var f = RingFixture()
        f.capacity = 1 << 20
        defer { try? FileManager.default.removeItem(at: f.directory) }
        do {
            let log = try f.open()
            try log.appendProjected("s", [ballot(1), ballot(2)])
        }
        // A well-formed version 2 header: the version field and a CRC that checks.
        var file = try Data(contentsOf: URL(fileURLWithPath: f.path))
        file.replaceSubrange(8..<12, with: [2, 0, 0, 0])
        let crc = crc32c(Array(file[0..<56]))
        file.replaceSubrange(56..<60, with: withUnsafeBytes(of: crc.littleEndian) { Array($0) })
        try file.write(to: URL(fileURLWithPath: f.path))

        #expect {
            try f.open()
        } throws: { error in
            guard let newer = error as? NewerDataFormat else { return false }
            return newer.found == "format version 2" && newer.known == "format version 1"
                && newer.description.contains("events.ring has format version 2")
                && newer.description.contains("written by a newer version of Tally")
        }
        #expect(throws: NewerDataFormat.self) {
            try DataFormat.refuseNewer(databasePath: f.directory.appendingPathComponent("tally.sqlite").path, ringPath: f.path)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.path)) == file, "neither recreated nor touched")
        #expect(!FileManager.default.fileExists(atPath: f.path + ".new"))
    }

    /// What `tally serve` logs at start and the README's "Upgrading" section promises: adding a
    /// migration fails this until both say the new format.
    @Test func theStartUpLogNamesTheFormatsThisReleaseWrites() {
        #expect(DataFormat.database == SQLiteProjection.migrator().migrations.last)
        #expect(DataFormat.summary == "database v6 (quiz), ring v1")
    }
}

/// CRC-32C (Castagnoli), bit by bit: the test's own, so it does not lean on the code under test.
private func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}
