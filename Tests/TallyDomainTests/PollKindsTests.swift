import Foundation
import Testing

@testable import TallyDomain

extension Room {
    @discardableResult
    mutating func run(_ command: SessionCommand, limits: SessionLimits) throws(DomainError) -> [SessionEvent] {
        let new = try state.decide(command, limits: limits, now: now)
        for event in new { state.apply(event) }
        events += new
        return new
    }

    mutating func ask(_ create: SessionCommand.CreatePoll, limits: SessionLimits = .init()) throws(DomainError) {
        var open = create
        open.openImmediately = true
        try run(.createPoll(open), limits: limits)
    }

    mutating func cast(_ who: ParticipantID, _ input: BallotInput, on poll: PollID = "p1", limits: SessionLimits = .init())
        throws(DomainError)
    {
        if !state.participants.contains(who) { try run(.join(who)) }
        try run(.vote(participant: who, poll: poll, ballot: input), limits: limits)
    }

    /// The results the room would see now (what `publishResults` would send them).
    func roomResults(_ poll: PollID = "p1") -> PollResults { state.results(of: poll, for: .room)! }
}

func create(_ kind: PollKind, _ id: PollID = "p1", options: [String] = [], question: String = "Q?") -> SessionCommand.CreatePoll {
    .init(pollId: id, question: question, options: options, kind: kind)
}

@Suite("Scale polls")
struct ScaleTests {
    @Test func distributionMeanAndMedianCoverTheWholeRange() throws {
        var room = try Room()
        var poll = create(.scale)
        poll.scale = ScaleSettings(min: 0, max: 4, minLabel: "  Never ", maxLabel: "Always")
        try room.ask(poll)
        #expect(room.state.poll("p1")?.scale == ScaleSettings(min: 0, max: 4, minLabel: "Never", maxLabel: "Always"))
        #expect(room.roomResults().mean == nil && room.roomResults().median == nil)
        for (who, value) in [("a", 0), ("b", 4), ("c", 4), ("d", 1)] { try room.cast(who, .value(value)) }
        try room.cast("d", .value(3))  // replaced: 0, 3, 4, 4
        let r = room.roomResults()
        #expect(r.distribution?.map(\.count) == [1, 0, 0, 1, 2])
        #expect(r.distribution?.map(\.value) == [0, 1, 2, 3, 4])
        #expect(r.mean == 2.75 && r.median == 3.5 && r.totalBallots == 4)
    }

    @Test func refusesWhatDoesNotFitTheScale() throws {
        var room = try Room()
        var poll = create(.scale)
        #expect(throws: DomainError.invalid("a scale poll needs \"scale\": {\"min\": 0 or 1, \"max\": 2 to 10}")) { try room.ask(poll) }
        poll.scale = ScaleSettings(min: 2, max: 5)
        #expect(throws: DomainError.invalid("scale.min must be 0 or 1, got 2")) { try room.ask(poll) }
        poll.scale = ScaleSettings(min: 1, max: 11)
        #expect(throws: DomainError.invalid("scale.max must be 2 to 10, got 11")) { try room.ask(poll) }
        poll.scale = ScaleSettings(min: 1, max: 5, minLabel: String(repeating: "x", count: 41))
        #expect(throws: DomainError.invalid("scale.minLabel is longer than 40 characters")) { try room.ask(poll) }
        poll.scale = ScaleSettings(min: 1, max: 5)
        poll.options = ["a", "b"]
        #expect(throws: DomainError.invalid("a scale poll has no options")) { try room.ask(poll) }
        poll.options = []
        try room.ask(poll)
        #expect(throws: DomainError.invalid("value must be 1 to 5, got 0")) { try room.cast("a", .value(0)) }
        #expect(throws: DomainError.invalid("this is a scale poll: send {\"value\": n}, not optionIds")) {
            try room.cast("a", .options(["o1"]))
        }
    }
}

@Suite("Ranking polls")
struct RankingTests {
    @Test func bordaPointsAndAverageRanksOrderTheOptions() throws {
        var room = try Room()
        try room.ask(create(.ranking, options: ["Tea", "Coffee", "Water", "Juice"]))
        try room.cast("a", .ranking(["o2", "o1", "o3", "o4"]))
        try room.cast("b", .ranking(["o2", "o3", "o1", "o4"]))
        try room.cast("c", .ranking(["o4", "o1", "o2", "o3"]))
        try room.cast("c", .ranking(["o1", "o2", "o4", "o3"]))  // replaced
        let options = try #require(room.roomResults().options)
        // Coffee 3+3+2 = 8; Tea 2+1+3 = 6; Water 1+2+0 = 3; Juice 0+0+1 = 1 (ranks 1,1,2 / 2,3,1 / 3,2,4 / 4,4,3).
        #expect(options.map(\.optionId) == ["o2", "o1", "o3", "o4"])
        #expect(options.map(\.points) == [8, 6, 3, 1])
        #expect(options.map(\.averageRank) == [1.33, 2.0, 3.0, 3.67])
    }

    @Test func aRankingNamesEveryOptionOnce() throws {
        var room = try Room()
        try room.ask(create(.ranking, options: ["a", "b", "c"]))
        #expect(throws: DomainError.invalid("a ranking puts every option in order; o3 is missing")) {
            try room.cast("x", .ranking(["o1", "o2"]))
        }
        #expect(throws: DomainError.invalid("option o1 is ranked twice")) { try room.cast("x", .ranking(["o1", "o1", "o2"])) }
        #expect(throws: DomainError.invalid("poll p1 has no option o4")) { try room.cast("x", .ranking(["o1", "o2", "o4"])) }
        #expect(throws: DomainError.invalid("a poll has 2 to 12 options, got 1")) {
            try room.ask(create(.ranking, "p2", options: ["only"]))
        }
        let ties = room.roomResults()
        #expect(ties.options?.map(\.optionId) == ["o1", "o2", "o3"], "without ballots, options keep their order")
        #expect(ties.options?.allSatisfy { $0.averageRank == nil } == true)
    }
}

@Suite("Word clouds")
struct WordCloudTests {
    @Test func wordsAreCountedAsPeopleMeanThem() throws {
        var room = try Room()
        try room.ask(create(.wordcloud))
        try room.cast("a", .words(["Café", " team\t spirit  "]))
        try room.cast("b", .words(["CAFÉ", "cafe\u{301}"]))  // one word twice in one ballot: once
        try room.cast("c", .words(["ｃａｆé", "Team Spirit", "Straße"]))
        try room.cast("d", .words(["strasse"]))
        let r = room.roomResults()
        #expect(r.words == [.init(text: "CAFÉ", count: 3), .init(text: "Straße", count: 2), .init(text: "Team Spirit", count: 2)])
        #expect(r.distinctWords == 3 && r.totalBallots == 4)
        #expect(room.state.ballot(of: "b", on: "p1") == .words([.init(text: "CAFÉ", key: "café", blocked: false)]))
        try room.cast("e", .words(["café"]))
        try room.cast("f", .words(["café"]))
        #expect(room.roomResults().words?.first == .init(text: "café", count: 5), "the most used spelling is shown")
        try room.cast("a", .words(["new"]))  // a replaced ballot takes its words away
        #expect(room.roomResults().words?.first == .init(text: "café", count: 4))
        #expect(room.roomResults().words?.contains { $0.text.lowercased() == "team spirit" && $0.count == 1 } == true)
    }

    @Test func wordsAreCheckedOneByOne() throws {
        var room = try Room()
        var poll = create(.wordcloud)
        poll.maxWords = 4
        #expect(throws: DomainError.invalid("maxWords must be 1 to 3, got 4")) { try room.ask(poll) }
        poll.maxWords = 2
        try room.ask(poll)
        #expect(throws: DomainError.invalid("this poll takes at most 2 words, got 3")) { try room.cast("a", .words(["a", "b", "c"])) }
        #expect(throws: DomainError.invalid("send at least one word")) { try room.cast("a", .words([])) }
        #expect(throws: DomainError.invalid("word 2 is empty")) { try room.cast("a", .words(["ok", " \n "])) }
        #expect(throws: DomainError.invalid("word 1 is longer than 25 characters")) {
            try room.cast("a", .words([String(repeating: "w", count: 26)]))
        }
        #expect(throws: DomainError.invalid("word 1 is too long: at most 25 characters of ordinary text")) {
            try room.cast("a", .words(["e" + String(repeating: "\u{301}", count: 60)]))
        }
        #expect(throws: DomainError.invalid("word 1 contains control characters")) { try room.cast("a", .words(["a\u{0}b"])) }
        #expect(throws: DomainError.invalid("this is a wordcloud poll: send {\"words\": [\"...\"]}, not text")) {
            try room.cast("a", .text("hi", answerId: "x", replacing: nil))
        }
    }

    @Test func hiddenAndBlockedWordsLeaveTheRoomButNotThePresenter() throws {
        var limits = SessionLimits()
        limits.blocklist = Blocklist(lines: ["# comment", "idiot", "shut up", ""])
        var room = try Room()
        try room.ask(create(.wordcloud), limits: limits)
        try room.cast("a", .words(["Idiot", "nice"]), limits: limits)
        try room.cast("b", .words(["nice", "meh"]), limits: limits)
        #expect(room.roomResults().words?.map(\.text) == ["nice", "meh"])
        #expect(room.roomResults().distinctWords == 2)
        let presenter = try #require(room.state.results(of: "p1", for: .presenter)?.words)
        #expect(presenter.contains(.init(text: "Idiot", count: 1, blocked: true)))

        let events = try room.run(.moderate("p1", .hideWord("MEH")))
        #expect(events.first == .pollModerated(.init(pollId: "p1", entry: .word, target: "meh", action: .hide)))
        // The room's results come in the same commit, already without the word.
        let roomEvent = events.compactMap { e -> SessionEvent.ResultsPublished? in
            if case .pollResults(let r) = e, r.viewer == .room { return r } else { return nil }
        }
        #expect(roomEvent.first?.results.words?.map(\.text) == ["nice"])
        #expect(events.contains { $0.audience == .presenter && $0.type == "poll.results" })
        #expect(throws: DomainError.conflict("\"meh\" is hidden already")) { try room.run(.moderate("p1", .hideWord("meh"))) }
        #expect(throws: DomainError.notFound("nobody has sent \"zzz\" on this poll")) { try room.run(.moderate("p1", .hideWord("zzz"))) }
        try room.run(.moderate("p1", .unhideWord("Meh")))
        #expect(room.roomResults().words?.map(\.text) == ["nice", "meh"])
        #expect(throws: DomainError.invalid("poll p1 is not an open poll")) { try room.run(.moderate("p1", .hideAnswer("a1"))) }
    }

    @Test func invisibleCharactersNeitherSplitAWordNorHideItFromTheBlocklist() throws {
        let list = Blocklist(lines: ["idiot", "a-hole"])
        #expect(list.matches("id\u{200B}iot") && list.matches("ID\u{00AD}IOT") && list.matches("\u{202E}idiot"))
        #expect(list.matches("what an A-HOLE") && list.matches("a hole"))
        #expect(WrittenText.key("caf\u{200B}é") == WrittenText.key("Café"))
        #expect(WrittenText.tidy("👩\u{200D}💻") == "👩\u{200D}💻", "emoji sequences keep their joiner")
        var room = try Room()
        try room.ask(create(.wordcloud))
        #expect(throws: DomainError.invalid("word 1 has nothing to show (only marks or invisible characters)")) {
            try room.cast("a", .words(["\u{00A8}"]))
        }
    }

    @Test func theBlocklistMatchesWholeWordsAndPhrases() {
        let list = Blocklist(lines: ["idiot", "Shut Up", "#not me"])
        #expect(list.count == 2)
        #expect(list.matches("IDIOT") && list.matches("you idiot!") && list.matches("oh  shut   up please"))
        #expect(!list.matches("idiotic") && !list.matches("shut the door") && !list.matches("not me"))
    }
}

@Suite("Open questions")
struct OpenAnswerTests {
    @Test func answersAddUpToTheLimitAndCanBeReplaced() throws {
        var room = try Room()
        var poll = create(.open)
        poll.maxAnswers = 2
        try room.ask(poll)
        try room.cast("a", .text("  First   idea ", answerId: "a1", replacing: nil))
        try room.cast("a", .text("Second", answerId: "a2", replacing: nil))
        #expect(throws: DomainError.conflict("this poll takes at most 2 answers from each participant; replace one instead")) {
            try room.cast("a", .text("Third", answerId: "a3", replacing: nil))
        }
        try room.cast("a", .text("First, better", answerId: "a4", replacing: "a1"))
        #expect(throws: DomainError.notFound("you have no answer a2 on this poll")) {
            try room.cast("b", .text("Not mine", answerId: "a5", replacing: "a2"))
        }
        #expect(throws: DomainError.conflict("answer a4 exists already")) {
            try room.cast("b", .text("dup", answerId: "a4", replacing: nil))
        }
        try room.cast("b", .text("From b", answerId: "a6", replacing: nil))
        let r = room.roomResults()
        #expect(r.answers?.map(\.text) == ["From b", "First, better", "Second"], "newest first")
        #expect(r.totalAnswers == 3 && r.totalBallots == 2)
        let page = try room.state.answers(of: "p1", for: .room, after: nil, limit: 2)
        #expect(page.answers.map(\.answerId) == ["a2", "a4"] && page.next == "a4")
        #expect(try room.state.answers(of: "p1", for: .room, after: "a4", limit: 2).answers.map(\.answerId) == ["a6"])
        #expect(try room.state.answers(of: "p1", for: .room, after: "a4", limit: 2).next == nil)
        // A cursor naming an answer that is gone (replaced, or never given) is refused, the same
        // live and after a restart: the client pages again from the start.
        for gone in ["a1", "zz"] {
            #expect(throws: DomainError.invalid("after names no answer of poll p1")) {
                try room.state.answers(of: "p1", for: .room, after: gone, limit: 5)
            }
        }
    }

    @Test func aHiddenAnswerStaysHiddenWhenItsWriterReplacesIt() throws {
        var room = try Room()
        try room.ask(create(.open))
        try room.cast("a", .text("rude", answerId: "a1", replacing: nil))
        try room.run(.moderate("p1", .hideAnswer("a1")))
        try room.cast("a", .text("rude again", answerId: "a2", replacing: nil))
        #expect(room.roomResults().answers == [] && room.roomResults().totalAnswers == 0)
        #expect(room.state.results(of: "p1", for: .presenter)?.answers?.first?.hidden == true)
        try room.cast("b", .text("fine", answerId: "a3", replacing: nil))
        #expect(room.roomResults().answers?.map(\.text) == ["fine"])
    }

    @Test func oneAnswerEachIsReplacedLikeABallot() throws {
        var room = try Room()
        try room.ask(create(.open))
        #expect(room.state.poll("p1")?.maxAnswers == 1 && room.state.poll("p1")?.moderation == .post)
        try room.cast("a", .text("one", answerId: "a1", replacing: nil))
        try room.cast("a", .text("two", answerId: "a2", replacing: nil))
        #expect(room.roomResults().answers?.map(\.text) == ["two"])
        #expect(throws: DomainError.invalid("the answer is longer than 280 characters")) {
            try room.cast("a", .text(String(repeating: "x", count: 281), answerId: "a3", replacing: nil))
        }
    }

    @Test func preModerationShowsOnlyApprovedAnswersAndHidingWorksOnTop() throws {
        var room = try Room()
        var poll = create(.open)
        poll.moderation = .pre
        poll.maxAnswers = 3
        try room.ask(poll)
        for (i, text) in ["good", "rude", "fine"].enumerated() {
            try room.cast("a", .text(text, answerId: "a\(i)", replacing: nil))
        }
        #expect(room.roomResults().answers == [] && room.roomResults().totalAnswers == 0)
        #expect(room.state.results(of: "p1", for: .presenter)?.answers?.allSatisfy { $0.pending == true } == true)
        try room.run(.moderate("p1", .approveAnswer("a0")))
        try room.run(.moderate("p1", .approveAnswer("a2")))
        try room.run(.moderate("p1", .hideAnswer("a2")))
        #expect(room.roomResults().answers?.map(\.text) == ["good"])
        #expect(throws: DomainError.conflict("answer a0 is approved already")) { try room.run(.moderate("p1", .approveAnswer("a0"))) }
        #expect(throws: DomainError.conflict("answer a0 is not hidden")) { try room.run(.moderate("p1", .unhideAnswer("a0"))) }
        try room.run(.moderate("p1", .unhideAnswer("a2")))
        #expect(room.roomResults().answers?.map(\.text) == ["fine", "good"])
    }

    @Test func kindSpecificFieldsBelongToTheirKind() throws {
        var room = try Room()
        var poll = create(.single, options: ["a", "b"])
        poll.maxAnswers = 2
        #expect(throws: DomainError.invalid("maxAnswers does not apply to a single poll")) { try room.ask(poll) }
        poll = create(.wordcloud)
        poll.moderation = .pre
        #expect(throws: DomainError.invalid("moderation does not apply to a wordcloud poll")) { try room.ask(poll) }
        poll = create(.open)
        poll.maxAnswers = 6
        #expect(throws: DomainError.invalid("maxAnswers must be 1 to 5, got 6")) { try room.ask(poll) }
    }
}

@Suite("Results on the wire")
struct ResultsSizeTests {
    /// The worst the room can write: the longest words and answers, in the widest characters.
    @Test func resultsStayWithin16KiBWhateverTheRoomWrites() throws {
        var room = try Room()
        try room.ask(create(.wordcloud))
        for i in 0..<150 {
            let words = (0..<3).map { j in
                String(UnicodeScalar(0x1F400 + i)!) + String(UnicodeScalar(0x1F330 + j)!) + String(repeating: "😀", count: 23)
            }
            try room.cast("p\(i)", .words(words))
        }
        try room.ask(create(.open, "p2"))
        for i in 0..<80 {
            try room.cast("p\(i)", .text("\(i)\"" + String(repeating: "😀", count: 270), answerId: "x\(i)", replacing: nil), on: "p2")
        }
        for poll in ["p1", "p2"] {
            for viewer in [ResultsViewer.presenter, .room] {
                let results = try #require(room.state.results(of: poll, for: viewer))
                // The envelope around a payload: ids, type, timestamp — generously counted.
                let bytes = try JSONEncoder().encode(results).count + 300
                #expect(bytes <= ResultsBudget.maxEventBytes, "\(poll) \(viewer): \(bytes) bytes")
            }
        }
        #expect(room.roomResults("p1").distinctWords == 450 && room.roomResults("p1").words!.count < 100)
        #expect(room.roomResults("p2").totalAnswers == 80 && room.roomResults("p2").answers!.first?.answerId == "x79")
    }
}

/// Decodes stored payloads from JSON, as the event log does.
struct JSONPayload: PayloadDecoder {
    let data: Data
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONDecoder().decode(T.self, from: data) }
}

@Suite("Replay of every kind")
struct KindReplayTests {
    /// Random rooms: every kind, replaced ballots, moderation, the blocklist. Replaying the stored
    /// (JSON round-tripped) events rebuilds the same state and the same results for every viewer,
    /// and the incrementally kept results equal a recount of the ballots.
    @Test(arguments: 1...6)
    func replayingTheEventsRebuildsTheSameResults(seed: UInt64) throws {
        var rng = SeededGenerator(state: seed)
        var limits = SessionLimits()
        limits.blocklist = Blocklist(lines: ["bad"])
        var room = try Room()
        let words = ["bad", "Good", "good", "GOOD", "fast", "Fast ", "slow", "ok"]
        for (index, kind) in [PollKind.scale, .ranking, .wordcloud, .open, .multiple].enumerated() {
            let pollId = "p\(index)"
            var poll = create(kind, pollId, options: kind.hasOptions ? ["a", "b", "c", "d"] : [])
            if kind == .scale { poll.scale = ScaleSettings(min: 0, max: 10) }
            if kind == .open {
                poll.maxAnswers = 3
                poll.moderation = seed % 2 == 0 ? .pre : .post
            }
            try room.ask(poll, limits: limits)
            for step in 0..<120 {
                let who = "v\(Int.random(in: 0..<25, using: &rng))"
                let input: BallotInput =
                    switch kind {
                    case .scale: .value(Int.random(in: 0...10, using: &rng))
                    case .ranking: .ranking(["o1", "o2", "o3", "o4"].shuffled(using: &rng))
                    case .wordcloud: .words((0..<Int.random(in: 1...3, using: &rng)).map { _ in words.randomElement(using: &rng)! })
                    case .open: .text(words.randomElement(using: &rng)! + " \(step)", answerId: "a\(index)x\(step)", replacing: nil)
                    default: .options(Array(["o1", "o2", "o3", "o4"].shuffled(using: &rng).prefix(Int.random(in: 1...4, using: &rng))))
                    }
                do {
                    try room.cast(who, input, on: pollId, limits: limits)
                } catch {
                    // Only an open poll's participant at their limit is refused.
                    #expect(kind == .open && error.description.contains("at most 3 answers"))
                }
                if kind == .wordcloud, step % 40 == 39 {
                    try? room.run(.moderate(pollId, step % 80 == 39 ? .hideWord("good") : .unhideWord("good")))
                }
                if kind == .open, step % 10 == 9, let entry = room.state.results(of: pollId, for: .presenter)?.answers?.first {
                    // The newest may be moderated already (a refusal, which changes nothing).
                    try? room.run(.moderate(pollId, seed % 2 == 0 ? .approveAnswer(entry.answerId) : .hideAnswer(entry.answerId)))
                }
            }
            try room.run(.publishResults(pollId))
        }

        let rebuilt = try room.replayedFromStoredEvents()
        #expect(rebuilt == room.state)
        for poll in rebuilt.polls {
            for viewer in [ResultsViewer.presenter, .room] {
                #expect(rebuilt.results(of: poll.id, for: viewer) == room.state.results(of: poll.id, for: viewer))
            }
            // A recount from the ballots alone agrees with the incremental tallies.
            let ballots = room.state.ballots(on: poll.id)
            let results = try #require(room.state.results(of: poll.id))
            #expect(results.totalBallots == ballots.count)
            switch poll.kind {
            case .scale:
                for bucket in results.distribution ?? [] {
                    #expect(bucket.count == ballots.values.filter { $0 == .scale(bucket.value) }.count)
                }
            case .ranking:
                for option in results.options ?? [] {
                    let points = ballots.values.reduce(0) { sum, ballot in
                        guard case .ranking(let ids) = ballot, let at = ids.firstIndex(of: option.optionId) else { return sum }
                        return sum + ids.count - 1 - at
                    }
                    #expect(option.points == points)
                }
            case .wordcloud:
                for word in results.words ?? [] {
                    let key = WrittenText.key(word.text)
                    let holders = ballots.values.filter { ballot in
                        if case .words(let list) = ballot { list.contains { $0.key == key } } else { false }
                    }
                    #expect(word.count == holders.count)
                }
            case .open:
                let all = ballots.values.reduce(0) { n, b in if case .answers(let list) = b { n + list.count } else { n } }
                #expect(results.totalAnswers == all)
            default:
                for count in results.counts ?? [] {
                    #expect(
                        count.count
                            == ballots.values.filter { if case .choice(let ids) = $0 { ids.contains(count.optionId) } else { false } }.count
                    )
                }
            }
        }
    }
}

extension Room {
    /// The state rebuilt from this room's events as the log stores them: each payload encoded to
    /// JSON, decoded by its type name, and applied.
    func replayedFromStoredEvents() throws -> SessionState {
        guard case .sessionCreated(let created) = events[0] else { throw DomainError.invalid("the first event creates the session") }
        var rebuilt = SessionState(created: created)
        for event in events.dropFirst() {
            let data = try JSONEncoder().encode(AnyEncodable(event.storedPayload))
            rebuilt.apply(try SessionEvent.decode(type: event.type, using: JSONPayload(data: data)))
        }
        return rebuilt
    }
}

/// Encodes an existential payload (the stored form of an event).
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
