import Foundation
import Testing

@testable import TallyDomain

@Suite("Templates")
struct TemplateTests {
    /// Out of one session and into another: the same polls, as drafts, decided by the same rules.
    @Test func aTemplateCarriesEveryPollsSettingsAndBecomesDrafts() throws {
        var source = try Room(title: "Keynote")
        try source.poll("p1", visibility: .hidden)
        try source.run(
            .createPoll(
                .init(
                    pollId: "p2", question: "How sure?", options: [], kind: .scale,
                    scale: ScaleSettings(min: 0, max: 10, minLabel: "No", maxLabel: "Yes"))))
        try source.run(
            .createPoll(
                .init(
                    pollId: "p3", question: "Capital?", options: ["Paris", "Lyon"], kind: .single,
                    quiz: QuizSettings(correctOptionIds: ["o2"], timeLimitSeconds: 30, points: 200))))
        try source.run(.join("ada"))
        try source.run(.vote(participant: "ada", poll: "p1", ballot: .options(["o1"])))
        let template = SessionTemplate(of: source.state)
        #expect(template.refusal == nil && template.title == "Keynote" && template.polls.count == 3)
        // Through JSON, as a file travels.
        let file = try JSONDecoder().decode(SessionTemplate.self, from: JSONEncoder().encode(template))
        #expect(file == template)

        var target = try Room(title: "Room B")
        let events = try target.run(.importPolls(file.polls.enumerated().map { $0.element.creating("n\($0.offset + 1)") }))
        #expect(events.count == 3 && target.state.polls.allSatisfy { $0.state == .draft })
        for (imported, original) in zip(target.state.polls, source.state.polls) {
            #expect(imported.question == original.question && imported.kind == original.kind && imported.options == original.options)
            #expect(imported.scale == original.scale && imported.quiz == original.quiz)
            #expect(imported.resultsVisibility == original.resultsVisibility)
        }
        #expect(target.state.results(of: "n1")?.totalBallots == 0, "no ballots travel")
    }

    /// Every refused entry is named by its position; nothing is imported unless all pass.
    @Test func badEntriesAreReportedByPositionAndNothingIsImported() throws {
        var room = try Room()
        let entries: [SessionTemplate.Entry] = [
            .init(question: "Fine", kind: .single, options: ["a", "b"]),
            .init(question: "", kind: .single, options: ["a", "b"]),
            .init(question: "Fine too", kind: .wordcloud),
            .init(question: "Options on words", kind: .wordcloud, options: ["x"]),
        ]
        let creates = entries.enumerated().map { $0.element.creating("q\($0.offset)") }
        let (_, problems) = room.state.importing(creates, limits: SessionLimits(), now: room.now)
        #expect(problems.map(\.position) == [2, 4])
        #expect("\(problems[1].error)".contains("no options"))
        #expect(throws: DomainError.self) { try room.run(.importPolls(creates)) }
        #expect(room.state.polls.isEmpty)
        // The session's poll limit counts the entries before: the 3rd of a 2-poll session fails.
        var limits = SessionLimits()
        limits.maxPollsPerSession = 2
        let three = (1...3).map { SessionTemplate.Entry(question: "Q\($0)", kind: .single, options: ["a", "b"]).creating("l\($0)") }
        #expect(room.state.importing(three, limits: limits, now: room.now).problems.map(\.position) == [3])
        #expect(SessionTemplate(title: nil, polls: []).refusal?.contains("no polls") == true)
        var newer = SessionTemplate(title: nil, polls: entries)
        newer.version = 2
        #expect(newer.refusal?.contains("newer") == true)
    }
}
