import Foundation
import GRDB
import Logging
import TallyDomain

/// Sessions, polls, participants and ballots as tables in SQLite (WAL): the durable state.
///
/// The ring is the write-ahead log; this is its projection. Each applied batch and the id of
/// the last event it contains (`projected_through`) commit in one transaction, so after any
/// crash the projection is exactly "every event up to N", and startup replays the ring after N.
/// The ring never overwrites an event this projection does not hold yet.
public final class SQLiteProjection: SettingsStore {
    let pool: DatabasePool

    public init(path: String) throws {
        let migrator = Self.migrator()
        // Before the pool opens (it may switch the journal mode) or anything migrates: a newer
        // Tally's database is refused untouched, so installing that version again finds it whole.
        try Self.refuseNewerFormat(at: path, migrator: migrator)
        var config = Configuration()
        config.label = "tally-projection"
        config.prepareDatabase { db in
            // NORMAL is enough: a lost last transaction after a power cut is replayed from the
            // ring, which is synced before any command is acknowledged.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        pool = try DatabasePool(path: path, configuration: config)
        try migrator.migrate(pool)
    }

    /// The database format, oldest migration first; the last one names the format this binary
    /// writes. A change to the format is a new migration at the end: never edit or remove a
    /// registered one (databases out there have run it), and test it from the previous format
    /// (`UpgradeTests`).
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE sessions (
                        id TEXT PRIMARY KEY, title TEXT NOT NULL, join_code TEXT NOT NULL,
                        ended INTEGER NOT NULL DEFAULT 0, created_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL);
                    CREATE TABLE polls (
                        session_id TEXT NOT NULL, poll_id TEXT NOT NULL, position INTEGER NOT NULL,
                        definition BLOB NOT NULL, state TEXT NOT NULL, revealed INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (session_id, poll_id));
                    CREATE TABLE participants (
                        session_id TEXT NOT NULL, participant_id TEXT NOT NULL, position INTEGER NOT NULL,
                        PRIMARY KEY (session_id, participant_id));
                    CREATE TABLE ballots (
                        session_id TEXT NOT NULL, poll_id TEXT NOT NULL, participant_id TEXT NOT NULL,
                        options BLOB NOT NULL, PRIMARY KEY (session_id, poll_id, participant_id));
                    """)
        }
        migrator.registerMigration("v2: ballot times") { db in
            try db.execute(sql: "ALTER TABLE ballots ADD COLUMN at_ms INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v3: joining and link generations") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN joining_closed INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE sessions ADD COLUMN presenter_link INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE sessions ADD COLUMN display_link INTEGER NOT NULL DEFAULT 0;
                    """)
        }
        migrator.registerMigration("v4: moderation of written answers") { db in
            // One row per moderated word (by key) or answer (by id): its latest state.
            try db.execute(
                sql: """
                    CREATE TABLE moderation (
                        session_id TEXT NOT NULL, poll_id TEXT NOT NULL, entry TEXT NOT NULL, target TEXT NOT NULL,
                        hidden INTEGER NOT NULL DEFAULT 0, approved INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (session_id, poll_id, entry, target));
                    """)
        }
        migrator.registerMigration("v5: audience Q&A") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN qna_state TEXT NOT NULL DEFAULT 'off';
                    ALTER TABLE sessions ADD COLUMN qna_moderation TEXT NOT NULL DEFAULT 'post';
                    ALTER TABLE sessions ADD COLUMN qna_anonymous INTEGER NOT NULL DEFAULT 1;
                    ALTER TABLE sessions ADD COLUMN qna_highlighted TEXT;
                    CREATE TABLE questions (
                        session_id TEXT NOT NULL, question_id TEXT NOT NULL, number INTEGER NOT NULL,
                        definition BLOB NOT NULL, state TEXT NOT NULL, PRIMARY KEY (session_id, question_id));
                    CREATE TABLE upvotes (
                        session_id TEXT NOT NULL, question_id TEXT NOT NULL, participant_id TEXT NOT NULL,
                        PRIMARY KEY (session_id, question_id, participant_id));
                    """)
        }
        migrator.registerMigration("v6: quiz") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN nicknames TEXT NOT NULL DEFAULT 'optional';
                    ALTER TABLE participants ADD COLUMN nickname TEXT;
                    ALTER TABLE polls ADD COLUMN opened_at TEXT;
                    ALTER TABLE polls ADD COLUMN closes_at TEXT;
                    ALTER TABLE polls ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE ballots ADD COLUMN quiz BLOB;
                    """)
        }
        return migrator
    }

    /// The format this binary writes: its last migration ("v6: quiz").
    public static let format = migrator().migrations.last ?? ""

    /// Throws `NewerDataFormat`, having only read the file, when the database at `path` has
    /// migrations this binary does not know: a newer Tally wrote it, and migrating or writing it
    /// here could break it for that version. Nothing happens when there is no database yet.
    static func refuseNewerFormat(at path: String, migrator: DatabaseMigrator) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        var config = Configuration()
        config.label = "tally-projection-format"
        config.readonly = true
        let unknown = try DatabaseQueue(path: path, configuration: config).read { db in
            try migrator.appliedIdentifiers(db).subtracting(migrator.migrations)
        }
        guard unknown.isEmpty else {
            throw NewerDataFormat(
                path: path, found: unknown.sorted().map { "\"\($0)\"" }.joined(separator: ", "), known: "\"\(format)\"")
        }
    }

    /// When each ballot was last cast (ms since 1970), per poll and participant: for exports.
    public func ballotTimes(session: String) throws -> [String: [String: Int64]] {
        try pool.read { db in
            var times: [String: [String: Int64]] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT poll_id, participant_id, at_ms FROM ballots WHERE session_id = ?", arguments: [session])
            {
                times[row[0], default: [:]][row[1]] = row[2]
            }
            return times
        }
    }

    /// Sequence of the last event the projection holds (0 when empty).
    public func projectedThrough() throws -> UInt64 {
        try setting("projected_through").flatMap(UInt64.init) ?? 0
    }

    /// Applies a batch of events (in order) and records how far the projection reaches.
    /// Events at or before `projectedThrough` are skipped, so applying twice is harmless.
    public func apply(_ batch: [LoggedEvent]) throws {
        guard let last = batch.last else { return }
        let encoder = JSONEncoder()
        try pool.write { db in
            let through =
                try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = 'projected_through'").flatMap(UInt64.init) ?? 0
            var lastOfSession: [String: UInt64] = [:]
            for logged in batch where logged.sequence > through {
                let s = logged.sessionId
                switch logged.event {
                case .sessionCreated(let c):
                    try db.execute(
                        sql:
                            "INSERT OR REPLACE INTO sessions(id, title, join_code, created_seq, last_seq, nicknames) VALUES (?, ?, ?, ?, ?, ?)",
                        arguments: [
                            s, c.title, c.joinCode.value, Int64(logged.sequence), Int64(logged.sequence),
                            (c.nicknames ?? .optional).rawValue,
                        ])
                case .sessionEnded:
                    try db.execute(sql: "UPDATE sessions SET ended = 1 WHERE id = ?", arguments: [s])
                case .pollCreated(let p):
                    var draft = p.poll
                    draft.state = .draft
                    draft.revealed = false
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO polls(session_id, poll_id, position, definition, state) VALUES (?, ?, ?, ?, ?)",
                        arguments: [s, p.poll.id, Int64(logged.sequence), try encoder.encode(draft), p.poll.state.rawValue])
                case .pollOpened(let p):
                    try db.execute(
                        sql: "UPDATE polls SET state = 'open', opened_at = ?, closes_at = ? WHERE session_id = ? AND poll_id = ?",
                        arguments: [p.poll.openedAt, p.poll.closesAt, s, p.poll.id])
                case .pollClosed(let p):
                    try db.execute(sql: "UPDATE polls SET state = 'closed' WHERE session_id = ? AND poll_id = ?", arguments: [s, p.pollId])
                case .pollRevealed(let p):
                    try db.execute(sql: "UPDATE polls SET revealed = 1 WHERE session_id = ? AND poll_id = ?", arguments: [s, p.pollId])
                case .pollResults, .pollBallots:
                    break
                case .joiningChanged(let j):
                    try db.execute(sql: "UPDATE sessions SET joining_closed = ? WHERE id = ?", arguments: [j.joiningOpen ? 0 : 1, s])
                case .linkRotated(let r):
                    let column = r.link == .presenter ? "presenter_link" : "display_link"
                    try db.execute(sql: "UPDATE sessions SET \(column) = ? WHERE id = ?", arguments: [r.generation, s])
                case .participantJoined(let j):
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO participants(session_id, participant_id, position, nickname) VALUES (?, ?, ?, ?)",
                        arguments: [s, j.participantId, Int64(logged.sequence), j.nickname])
                case .ballotCast(let b):
                    // The hot path (one per vote): a prepared statement, reused.
                    try db.cachedStatement(
                        sql:
                            "INSERT OR REPLACE INTO ballots(session_id, poll_id, participant_id, options, at_ms, quiz) VALUES (?, ?, ?, ?, ?, ?)"
                    ).execute(arguments: [
                        s, b.pollId, b.participantId, try Self.encode(b.ballot, encoder),
                        Int64(logged.timestamp.timeIntervalSince1970 * 1000), try b.quiz.map { try encoder.encode($0) },
                    ])
                case .qnaOpened(let o):
                    try db.execute(
                        sql: "UPDATE sessions SET qna_state = 'open', qna_moderation = ?, qna_anonymous = ? WHERE id = ?",
                        arguments: [o.moderation.rawValue, o.anonymous ? 1 : 0, s])
                case .qnaClosed:
                    try db.execute(sql: "UPDATE sessions SET qna_state = 'closed' WHERE id = ?", arguments: [s])
                case .questionAsked(let q):
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO questions(session_id, question_id, number, definition, state) VALUES (?, ?, ?, ?, ?)",
                        arguments: [s, q.question.questionId, q.question.number, try encoder.encode(q.question), q.question.state.rawValue])
                case .questionApproved(let q):
                    try setQuestion(db, s, q.question.questionId, to: .visible)
                case .questionHidden(let r):
                    try setQuestion(db, s, r.questionId, to: .hidden)
                case .questionAnswered(let r):
                    try setQuestion(db, s, r.questionId, to: .answered)
                case .questionWithdrawn(let r):
                    try setQuestion(db, s, r.questionId, to: .withdrawn)
                    try db.execute(sql: "DELETE FROM upvotes WHERE session_id = ? AND question_id = ?", arguments: [s, r.questionId])
                case .questionHighlighted(let r):
                    try db.execute(sql: "UPDATE sessions SET qna_highlighted = ? WHERE id = ?", arguments: [r.questionId, s])
                case .questionUpvoted(let u):
                    // The hot path of a Q&A (one per upvote): prepared statements, reused.
                    try db.cachedStatement(
                        sql: u.on
                            ? "INSERT OR IGNORE INTO upvotes(session_id, question_id, participant_id) VALUES (?, ?, ?)"
                            : "DELETE FROM upvotes WHERE session_id = ? AND question_id = ? AND participant_id = ?"
                    ).execute(arguments: [s, u.questionId, u.participantId])
                case .questionUpvotes:
                    break
                case .quizResults, .quizLeaderboard, .quizScore:
                    break
                case .quizReset(let r):
                    for poll in r.pollIds {
                        try db.execute(sql: "UPDATE polls SET retired = 1 WHERE session_id = ? AND poll_id = ?", arguments: [s, poll])
                    }
                case .nicknamesChanged(let n):
                    try db.execute(sql: "UPDATE sessions SET nicknames = ? WHERE id = ?", arguments: [n.nicknames.rawValue, s])
                case .pollModerated(let m):
                    let column = m.action == .approve ? "approved" : "hidden"
                    try db.execute(
                        sql: """
                            INSERT INTO moderation(session_id, poll_id, entry, target, \(column)) VALUES (?, ?, ?, ?, ?)
                            ON CONFLICT DO UPDATE SET \(column) = excluded.\(column)
                            """,
                        arguments: [s, m.pollId, m.entry.rawValue, m.target, m.action == .unhide ? 0 : 1])
                }
                lastOfSession[s] = logged.sequence
            }
            // One update per session per batch, not per event.
            for (session, sequence) in lastOfSession {
                try db.cachedStatement(sql: "UPDATE sessions SET last_seq = ? WHERE id = ?").execute(arguments: [Int64(sequence), session])
            }
            if last.sequence > through {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO settings(key, value) VALUES ('projected_through', ?)",
                    arguments: ["\(last.sequence)"])
            }
        }
    }

    /// A restored session: its state and the sequence of its last event.
    public struct RestoredSession: Sendable {
        public var state: SessionState
        public var lastSequence: UInt64
    }

    /// Rebuilds every session, in creation order, by folding synthetic events through the same
    /// `SessionState.apply` that live commands use.
    public func load() throws -> [RestoredSession] {
        try loadFolding(recording: false).map(\.session)
    }

    /// The same, with the synthetic events each state was folded from, in order (`tally
    /// migrate` writes them as the sessions' history in a cluster's log).
    public func loadWithHistory() throws -> [(session: RestoredSession, events: [SessionEvent])] {
        try loadFolding(recording: true)
    }

    /// A state being rebuilt, and (when asked) the events applied to it.
    struct Folding {
        var state: SessionState
        var events: [SessionEvent]?

        init(created: SessionEvent.SessionCreated, recording: Bool) {
            state = SessionState(created: created)
            events = recording ? [.sessionCreated(created)] : nil
        }

        mutating func apply(_ event: SessionEvent) {
            state.apply(event)
            events?.append(event)
        }

        func results(of poll: PollID) -> PollResults? { state.results(of: poll) }
    }

    private func loadFolding(recording: Bool) throws -> [(session: RestoredSession, events: [SessionEvent])] {
        let decoder = JSONDecoder()
        return try pool.read { db in
            var restored: [(session: RestoredSession, events: [SessionEvent])] = []
            let sessions = try Row.fetchAll(
                db,
                sql:
                    """
                    SELECT id, title, join_code, ended, last_seq, joining_closed, presenter_link, display_link,
                        qna_state, qna_moderation, qna_anonymous, qna_highlighted, nicknames FROM sessions ORDER BY created_seq
                    """
            )
            for row in sessions {
                let id: String = row[0]
                guard let code = JoinCode(row[2] as String) else { continue }
                var state = Folding(
                    created: .init(
                        sessionId: id, title: row[1], joinCode: code, nicknames: NicknamePolicy(rawValue: row[12] as String) ?? .optional),
                    recording: recording)
                let polls = try Row.fetchAll(
                    db,
                    sql:
                        "SELECT definition, state, revealed, opened_at, closes_at, retired FROM polls WHERE session_id = ? ORDER BY position",
                    arguments: [id])
                var openPoll: Poll?
                var retired: [PollID] = []
                for p in polls {
                    var poll = try decoder.decode(Poll.self, from: p[0] as Data)
                    state.apply(.pollCreated(.init(poll: poll)))
                    let pollState = PollState(rawValue: p[1] as String) ?? .draft
                    if (p[5] as Int64) != 0 { retired.append(poll.id) }
                    if pollState != .draft {
                        poll.state = .open
                        poll.openedAt = p[3]
                        poll.closesAt = p[4]
                        state.apply(.pollOpened(.init(poll: poll)))
                        if pollState == .closed { state.apply(.pollClosed(.init(pollId: poll.id))) } else { openPoll = poll }
                    }
                    if (p[2] as Int64) != 0, let results = state.results(of: poll.id) {
                        state.apply(.pollRevealed(.init(pollId: poll.id, results: results)))
                    }
                }
                if let openPoll { state.apply(.pollOpened(.init(poll: openPoll))) }
                if !retired.isEmpty { state.apply(.quizReset(.init(pollIds: retired))) }
                var count = 0
                for p in try Row.fetchAll(
                    db, sql: "SELECT participant_id, nickname FROM participants WHERE session_id = ? ORDER BY position", arguments: [id])
                {
                    count += 1
                    state.apply(.participantJoined(.init(participantId: p[0], participantCount: count, nickname: p[1])))
                }
                for b in try Row.fetchAll(
                    db, sql: "SELECT poll_id, participant_id, options, quiz FROM ballots WHERE session_id = ?", arguments: [id])
                {
                    let mark = try (b[3] as Data?).map { try decoder.decode(QuizMark.self, from: $0) }
                    state.apply(
                        .ballotCast(
                            .init(pollId: b[0], participantId: b[1], ballot: try Self.decodeBallot(b[2] as Data, decoder), quiz: mark)))
                }
                for m in try Row.fetchAll(
                    db, sql: "SELECT poll_id, entry, target, hidden, approved FROM moderation WHERE session_id = ?", arguments: [id])
                {
                    guard let entry = SessionEvent.PollModerated.Entry(rawValue: m[1]) else { continue }
                    if (m[3] as Int64) != 0 { state.apply(.pollModerated(.init(pollId: m[0], entry: entry, target: m[2], action: .hide))) }
                    if (m[4] as Int64) != 0 {
                        state.apply(.pollModerated(.init(pollId: m[0], entry: entry, target: m[2], action: .approve)))
                    }
                }
                try Self.restoreQnA(db, session: id, row: row, into: &state, decoder)
                if (row[5] as Int64) != 0 { state.apply(.joiningChanged(.init(joiningOpen: false))) }
                for (link, column) in [(SessionLink.presenter, 6), (SessionLink.display, 7)] where (row[column] as Int64) != 0 {
                    state.apply(.linkRotated(.init(link: link, generation: Int(row[column] as Int64))))
                }
                if (row[3] as Int64) != 0 { state.apply(.sessionEnded(.init(sessionId: id))) }
                restored.append((RestoredSession(state: state.state, lastSequence: UInt64(row[4] as Int64)), state.events ?? []))
            }
            return restored
        }
    }

    /// Folds a session's Q&A back in: settings, every question in age order with its current
    /// state, the upvotes, the highlight — through the same `apply` as live commands.
    private static func restoreQnA(_ db: Database, session id: String, row: Row, into state: inout Folding, _ decoder: JSONDecoder)
        throws
    {
        let qnaState = QnAState(rawValue: row[8] as String) ?? .off
        guard qnaState != .off else { return }
        let moderation = Moderation(rawValue: row[9] as String) ?? .post
        state.apply(.qnaOpened(.init(moderation: moderation, anonymous: (row[10] as Int64) != 0)))
        for q in try Row.fetchAll(
            db, sql: "SELECT definition, state FROM questions WHERE session_id = ? ORDER BY number", arguments: [id])
        {
            var question = try decoder.decode(Question.self, from: q[0] as Data)
            question.state = QuestionState(rawValue: q[1] as String) ?? question.state
            state.apply(.questionAsked(.init(question: question, upvotes: 0, highlighted: false, visibleToRoom: false)))
        }
        for u in try Row.fetchAll(db, sql: "SELECT question_id, participant_id FROM upvotes WHERE session_id = ?", arguments: [id]) {
            state.apply(.questionUpvoted(.init(questionId: u[0], participantId: u[1], on: true)))
        }
        // Counts restored are not news: nothing is waiting to be published.
        let counts = state.state.qna.allQuestions.map {
            SessionEvent.UpvoteCounts.Count(questionId: $0.questionId, upvotes: state.state.qna.upvotes($0.questionId))
        }
        state.apply(.questionUpvotes(.init(counts: counts, viewer: nil)))
        if let highlighted = row[11] as String? { state.apply(.questionHighlighted(.init(questionId: highlighted, visibleToRoom: true))) }
        if qnaState == .closed { state.apply(.qnaClosed(.init())) }
    }

    /// A question's new state; one leaving the room's sight is no longer highlighted.
    private func setQuestion(_ db: Database, _ session: String, _ question: String, to state: QuestionState) throws {
        try db.execute(
            sql: "UPDATE questions SET state = ? WHERE session_id = ? AND question_id = ?", arguments: [state.rawValue, session, question])
        if state != .visible {
            try db.execute(
                sql: "UPDATE sessions SET qna_highlighted = NULL WHERE id = ? AND qna_highlighted = ?", arguments: [session, question])
        }
    }

    /// A choice ballot is stored as its option ids (`["o1"]`, as since the first version);
    /// every other kind as its flat object (`{"value": 4}`, `{"words": [...]}` …).
    static func encode(_ ballot: Ballot, _ encoder: JSONEncoder) throws -> Data {
        if case .choice(let ids) = ballot { return try encoder.encode(ids) }
        return try encoder.encode(ballot)
    }

    static func decodeBallot(_ data: Data, _ decoder: JSONDecoder) throws -> Ballot {
        if data.first == UInt8(ascii: "[") { return .choice(try decoder.decode([OptionID].self, from: data)) }
        return try decoder.decode(Ballot.self, from: data)
    }

    // MARK: settings

    public func setting(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, to value: String) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", arguments: [key, value])
        }
    }

    public func isReadable() -> Bool {
        (try? pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }
}

/// Small persistent settings (the appliance secret, the operator password hash).
///
/// Reads answer at once (a sign-in check must not wait); a write may wait (a cluster's
/// settings are written to PostgreSQL before the change is acknowledged).
public protocol SettingsStore: Sendable {
    func setting(_ key: String) throws -> String?
    func setSetting(_ key: String, to value: String) async throws
    /// Changes a setting from its current value as one step (in a cluster, against every other
    /// instance changing it too). Returns the new value.
    func updateSetting(_ key: String, _ transform: @escaping @Sendable (String?) -> String) async throws -> String
}

extension SettingsStore {
    /// One process: reading then writing is one step as long as its callers take turns.
    public func updateSetting(_ key: String, _ transform: @escaping @Sendable (String?) -> String) async throws -> String {
        let value = transform(try setting(key))
        try await setSetting(key, to: value)
        return value
    }
}
