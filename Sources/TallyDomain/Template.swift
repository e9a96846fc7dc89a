import Foundation

/// A session's polls as a file a presenter keeps: prepared once, imported into the next
/// session (or the same talk at another venue). Questions, kinds, options, settings and a quiz
/// question's right answers — never ballots, never who took part.
public struct SessionTemplate: Codable, Sendable, Equatable {
    /// What the file says it is, so a stray JSON file is refused by name, not by a missing field.
    public static let formatName = "tally-template"
    /// The newest layout this release writes and reads.
    public static let currentVersion = 1

    public var format: String
    public var version: Int
    /// The session it came from (a hint for people; importing never renames a session).
    public var title: String?
    public var polls: [Entry]

    /// One poll, as a presenter would type it. A quiz question's `correctOptionIds` name its
    /// options by position (`o1` is the first), as the API does.
    public struct Entry: Codable, Sendable, Equatable {
        public var question: String
        public var kind: PollKind
        public var options: [String]?
        public var resultsVisibility: ResultsVisibility?
        public var scale: ScaleSettings?
        public var maxWords: Int?
        public var maxAnswers: Int?
        public var moderation: Moderation?
        public var quiz: QuizSettings?

        public init(
            question: String, kind: PollKind, options: [String]? = nil, resultsVisibility: ResultsVisibility? = nil,
            scale: ScaleSettings? = nil, maxWords: Int? = nil, maxAnswers: Int? = nil, moderation: Moderation? = nil,
            quiz: QuizSettings? = nil
        ) {
            self.question = question
            self.kind = kind
            self.options = options
            self.resultsVisibility = resultsVisibility
            self.scale = scale
            self.maxWords = maxWords
            self.maxAnswers = maxAnswers
            self.moderation = moderation
            self.quiz = quiz
        }

        /// The command that makes this entry a draft poll with id `pollId`.
        public func creating(_ pollId: PollID) -> SessionCommand.CreatePoll {
            SessionCommand.CreatePoll(
                pollId: pollId, question: question, options: options ?? [], kind: kind, resultsVisibility: resultsVisibility ?? .live,
                openImmediately: false, scale: scale, maxWords: maxWords, maxAnswers: maxAnswers, moderation: moderation, quiz: quiz)
        }
    }

    public init(title: String?, polls: [Entry]) {
        self.format = Self.formatName
        self.version = Self.currentVersion
        self.title = title
        self.polls = polls
    }

    /// Every poll of a session, in the order they were made, whatever state each is in.
    public init(of state: SessionState) {
        self.init(
            title: state.title,
            polls: state.polls.map { poll in
                Entry(
                    question: poll.question, kind: poll.kind, options: poll.kind.hasOptions ? poll.options.map(\.label) : nil,
                    resultsVisibility: poll.resultsVisibility, scale: poll.scale, maxWords: poll.maxWords,
                    maxAnswers: poll.maxAnswers, moderation: poll.moderation, quiz: poll.quiz)
            })
    }

    /// Why this file cannot be imported as a whole (not a template, a newer layout, empty).
    public var refusal: String? {
        guard format == Self.formatName else { return "this is not a Tally template (format must be \"\(Self.formatName)\")" }
        guard version <= Self.currentVersion else {
            return "this template was written by a newer Tally (version \(version)); this one reads up to version \(Self.currentVersion)"
        }
        guard version >= 1 else { return "version must be 1 or more" }
        guard !polls.isEmpty else { return "the template holds no polls" }
        return nil
    }
}

/// One entry of a template the rules refused, by its position in the file (1 is the first).
public struct ImportProblem: Sendable, Equatable {
    public var position: Int
    public var error: DomainError

    public init(position: Int, error: DomainError) {
        self.position = position
        self.error = error
    }
}

extension SessionState {
    /// What importing these polls as drafts would make, each decided by the same rules as a
    /// poll typed in the composer, in order (the session's poll limit counts the earlier ones).
    /// Every refused entry is reported, not only the first; the events are whole only when
    /// `problems` is empty.
    public func importing(
        _ creates: [SessionCommand.CreatePoll], limits: SessionLimits, now: Date
    ) -> (events: [SessionEvent], problems: [ImportProblem]) {
        var scratch = self
        var events: [SessionEvent] = []
        var problems: [ImportProblem] = []
        for (index, create) in creates.enumerated() {
            var draft = create
            draft.openImmediately = false
            do throws(DomainError) {
                let made = try scratch.decide(.createPoll(draft), limits: limits, now: now)
                for event in made { scratch.apply(event) }
                events += made
            } catch {
                problems.append(ImportProblem(position: index + 1, error: error))
            }
        }
        return (events, problems)
    }
}
