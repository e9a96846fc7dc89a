/// Audience Q&A beside the polls of a session: participants ask and upvote, the presenter
/// moderates and takes questions from the top. The same single writer, log and routing as polls.
public typealias QuestionID = String

/// Whether the session takes questions. `off` until the presenter first opens Q&A.
public enum QnAState: String, Codable, Sendable {
    case off
    case open
    case closed
}

/// Where a question stands. Only `visible` and `answered` questions reach the room.
public enum QuestionState: String, Codable, Sendable {
    case pending
    case visible
    case hidden
    case answered
    /// Taken back by its author: gone from every list, kept only so limits still count it.
    case withdrawn

    var isShownToRoom: Bool { self == .visible || self == .answered }
}

/// One question as stored. `author` never leaves the server (see `QuestionView`).
public struct Question: Codable, Sendable, Equatable {
    public var questionId: QuestionID
    /// Age order: assigned by the writer, so every replay orders questions alike.
    public var number: Int
    public var author: ParticipantID
    public var text: String
    public var name: String?
    public var state: QuestionState
    /// The blocklist matched the text or the name: kept hidden from the room.
    public var blocked: Bool?
    /// When the server accepted it (RFC 3339, passed in by the caller: the domain has no clock).
    public var askedAt: String

    public var isBlocked: Bool { blocked == true }
}

/// What the presenter does to a question.
public enum QuestionAction: String, Codable, Sendable, CaseIterable {
    case approve, hide, unhide, answered, highlight
}

/// Q&A commands (`SessionCommand.qna`).
public enum QnACommand: Sendable, Equatable {
    case open(moderation: Moderation, anonymous: Bool)
    case close
    case ask(participant: ParticipantID, questionId: QuestionID, text: String, name: String?, askedAt: String)
    case upvote(participant: ParticipantID, questionId: QuestionID, on: Bool)
    case withdraw(participant: ParticipantID, questionId: QuestionID)
    case moderate(QuestionID, QuestionAction)
    /// Emitted by the coalescer, not by a person: publish the upvote counts that changed.
    case publishUpvotes
}

/// How a question list is ordered: most upvoted first (then oldest), or newest first.
public enum QuestionOrder: String, Sendable, CaseIterable, StrictlyDecodedEnum, Codable {
    case top
    case newest
}

/// The session's Q&A: settings, questions, upvotes, the highlighted question.
public struct QnABoard: Sendable, Equatable {
    public internal(set) var state: QnAState = .off
    public internal(set) var moderation: Moderation = .post
    public internal(set) var anonymous = true
    public internal(set) var highlighted: QuestionID?
    var questions: [QuestionID: Question] = [:]
    var upvoters: [QuestionID: Set<ParticipantID>] = [:]
    /// Questions asked per participant, withdrawn ones included (the per-person limit).
    var askedBy: [ParticipantID: Int] = [:]
    var nextNumber = 1
    /// Questions whose upvote count changed since the last `question.upvotes`.
    var changed: Set<QuestionID> = []

    public func question(_ id: QuestionID) -> Question? { questions[id] }
    public func upvotes(_ id: QuestionID) -> Int { upvoters[id]?.count ?? 0 }
    public func hasUpvoted(_ participant: ParticipantID, _ id: QuestionID) -> Bool { upvoters[id]?.contains(participant) ?? false }
    public var totalAsked: Int { nextNumber - 1 }
    /// Every question ever asked, oldest first (withdrawn ones included), for exports.
    public var allQuestions: [Question] { questions.values.sorted { $0.number < $1.number } }
}

/// A question as a client sees it. Never names the author; `mine` and `upvotedByMe` are the
/// viewer's own (snapshots only: events carry no viewer).
public struct QuestionView: Codable, Sendable, Equatable {
    public var questionId: QuestionID
    public var text: String
    public var name: String?
    public var upvotes: Int
    public var state: QuestionState
    public var highlighted: Bool
    public var askedAt: String
    /// Presenter only.
    public var blocked: Bool?
    public var mine: Bool?
    public var upvotedByMe: Bool?
}

/// The Q&A part of a session snapshot.
public struct QnAView: Codable, Sendable, Equatable {
    public var state: QnAState
    public var moderation: Moderation
    public var anonymous: Bool
    /// Presenter only: questions waiting for approval.
    public var pendingCount: Int?
    public var questions: [QuestionView]
}

extension SessionEvent {
    public struct QnAOpened: Codable, Sendable, Equatable {
        public var moderation: Moderation
        public var anonymous: Bool
        public init(moderation: Moderation, anonymous: Bool) {
            self.moderation = moderation
            self.anonymous = anonymous
        }
    }

    public struct QnAClosed: Codable, Sendable, Equatable {
        public init() {}
    }

    /// A question asked, or shown to the room (approved, unhidden). `visibleToRoom` is decided
    /// when the event is made, so a replay routes it as it was routed live.
    public struct QuestionShown: Codable, Sendable, Equatable {
        public var question: Question
        public var upvotes: Int
        public var highlighted: Bool
        public var visibleToRoom: Bool
        public init(question: Question, upvotes: Int, highlighted: Bool, visibleToRoom: Bool) {
            self.question = question
            self.upvotes = upvotes
            self.highlighted = highlighted
            self.visibleToRoom = visibleToRoom
        }
    }

    public struct QuestionRef: Codable, Sendable, Equatable {
        public var questionId: QuestionID
        /// Whether the room knew the question (a pending one's fate concerns the presenter only).
        public var visibleToRoom: Bool
        public init(questionId: QuestionID, visibleToRoom: Bool) {
            self.questionId = questionId
            self.visibleToRoom = visibleToRoom
        }
    }

    /// One participant's upvote put on or taken back; never sent (counts follow, coalesced).
    public struct QuestionUpvoted: Codable, Sendable, Equatable {
        public var questionId: QuestionID
        public var participantId: ParticipantID
        public var on: Bool
        public init(questionId: QuestionID, participantId: ParticipantID, on: Bool) {
            self.questionId = questionId
            self.participantId = participantId
            self.on = on
        }
    }

    /// The upvote counts that changed since the last such event. Like results, the presenter's
    /// (every question) and the room's (shown questions only) are two events when they differ.
    public struct UpvoteCounts: Codable, Sendable, Equatable {
        public struct Count: Codable, Sendable, Equatable {
            public var questionId: QuestionID
            public var upvotes: Int
            public init(questionId: QuestionID, upvotes: Int) {
                self.questionId = questionId
                self.upvotes = upvotes
            }
        }
        public var counts: [Count]
        public var viewer: ResultsViewer?
        public init(counts: [Count], viewer: ResultsViewer?) {
            self.counts = counts
            self.viewer = viewer
        }
    }

    /// The client's form of a question event: no author, no routing flag.
    struct PublicQuestion: Codable, Sendable {
        var question: QuestionView
    }

    struct PublicQuestionRef: Codable, Sendable {
        var questionId: QuestionID
    }

    struct PublicCounts: Codable, Sendable {
        var counts: [UpvoteCounts.Count]
    }
}

extension Question {
    public func view(upvotes: Int, highlighted: Bool, for role: Role, viewer: ParticipantID?, board: QnABoard) -> QuestionView {
        let mine = viewer == author
        var shownState = state
        // A blocked question looks to its author as any other of theirs would.
        if mine, isBlocked, state == .hidden { shownState = board.moderation == .pre ? .pending : .visible }
        return QuestionView(
            questionId: questionId, text: text, name: name, upvotes: upvotes, state: shownState, highlighted: highlighted,
            askedAt: askedAt, blocked: role == .presenter && isBlocked ? true : nil, mine: mine ? true : nil,
            upvotedByMe: viewer.map { board.hasUpvoted($0, questionId) } == true ? true : nil)
    }
}

extension QnABoard {
    /// The board as `role` may see it: the room never sees pending or hidden questions (an author
    /// sees their own), the presenter sees all.
    func view(for role: Role, participant: ParticipantID?, order: QuestionOrder) -> QnAView {
        let listed = questions.values.filter { q in
            q.state != .withdrawn && (role == .presenter || q.state.isShownToRoom || (participant != nil && q.author == participant))
        }
        let sorted = listed.sorted { a, b in
            switch order {
            case .newest: return a.number > b.number
            case .top:
                let (ua, ub) = (upvotes(a.questionId), upvotes(b.questionId))
                return ua != ub ? ua > ub : a.number < b.number
            }
        }
        return QnAView(
            state: state, moderation: moderation, anonymous: anonymous,
            pendingCount: role == .presenter ? questions.values.filter { $0.state == .pending }.count : nil,
            questions: sorted.map {
                $0.view(
                    upvotes: upvotes($0.questionId), highlighted: highlighted == $0.questionId, for: role, viewer: participant,
                    board: self)
            })
    }

    // MARK: decide

    func decide(_ command: QnACommand, limits: SessionLimits) throws(DomainError) -> [SessionEvent] {
        switch command {
        case .open(let moderation, let anonymous):
            guard state != .open else { throw .conflict("Q&A is already open") }
            return [.qnaOpened(.init(moderation: moderation, anonymous: anonymous))]

        case .close:
            guard state == .open else { throw .conflict("Q&A is not open") }
            return [.qnaClosed(.init())]

        case .ask(let participant, let questionId, let rawText, let rawName, let askedAt):
            guard state == .open else {
                throw .conflict(state == .off ? "the presenter has not opened Q&A" : "Q&A is closed")
            }
            guard questions[questionId] == nil else { throw .conflict("question \(questionId) exists already") }
            let text = try SessionState.written(rawText, what: "the question", max: limits.maxAnswerLength)
            var name: String?
            if let rawName, !WrittenText.tidy(rawName).isEmpty {
                guard !anonymous else { throw .invalid("this Q&A is anonymous: leave the name out") }
                name = try SessionState.written(rawName, what: "the name", max: limits.maxNameLength)
            }
            guard (askedBy[participant] ?? 0) < limits.maxQuestionsPerParticipant else {
                throw .limitReached(
                    "you have asked \(limits.maxQuestionsPerParticipant) questions in this session, the most one person may")
            }
            guard totalAsked < limits.maxQuestionsPerSession else {
                throw .limitReached("this session holds at most \(limits.maxQuestionsPerSession) questions")
            }
            let blocked = limits.blocklist.matches(text) || name.map(limits.blocklist.matches) == true
            let questionState: QuestionState = blocked ? .hidden : (moderation == .pre ? .pending : .visible)
            let question = Question(
                questionId: questionId, number: nextNumber, author: participant, text: text, name: name, state: questionState,
                blocked: blocked ? true : nil, askedAt: askedAt)
            return [.questionAsked(.init(question: question, upvotes: 0, highlighted: false, visibleToRoom: questionState.isShownToRoom))]

        case .upvote(let participant, let questionId, let on):
            guard let question = questions[questionId], question.state != .withdrawn,
                question.state.isShownToRoom || question.author == participant
            else { throw .notFound("no question \(questionId) in this session") }
            guard question.author != participant else { throw .conflict("you cannot upvote your own question") }
            guard state == .open else { throw .conflict("Q&A is closed") }
            // Repeating is harmless: nothing new happens (and nothing is logged).
            guard hasUpvoted(participant, questionId) != on else { return [] }
            guard !on || question.state == .visible else { throw .conflict("question \(questionId) has been answered") }
            return [.questionUpvoted(.init(questionId: questionId, participantId: participant, on: on))]

        case .withdraw(let participant, let questionId):
            guard let question = questions[questionId], question.author == participant, question.state != .withdrawn else {
                throw .notFound("you have no question \(questionId) in this session")
            }
            return [.questionWithdrawn(.init(questionId: questionId, visibleToRoom: question.state.isShownToRoom))]

        case .moderate(let questionId, let action):
            guard let question = questions[questionId], question.state != .withdrawn else {
                throw .notFound("no question \(questionId) in this session")
            }
            let ref = SessionEvent.QuestionRef(questionId: questionId, visibleToRoom: question.state.isShownToRoom)
            func shown() -> [SessionEvent] {
                var visible = question
                visible.state = .visible
                return [.questionApproved(.init(question: visible, upvotes: upvotes(questionId), highlighted: false, visibleToRoom: true))]
            }
            switch action {
            case .approve:
                guard question.state == .pending else { throw .conflict("question \(questionId) is not waiting for approval") }
                return shown()
            case .unhide:
                guard question.state == .hidden else { throw .conflict("question \(questionId) is not hidden") }
                return shown()
            case .hide:
                guard question.state != .hidden else { throw .conflict("question \(questionId) is hidden already") }
                return [.questionHidden(ref)]
            case .answered:
                guard question.state == .visible else {
                    throw .conflict("question \(questionId) is \(question.state.rawValue); only a visible question can be answered")
                }
                return [.questionAnswered(ref)]
            case .highlight:
                guard question.state == .visible else {
                    throw .conflict("question \(questionId) is \(question.state.rawValue); only a visible question can be highlighted")
                }
                guard highlighted != questionId else { throw .conflict("question \(questionId) is highlighted already") }
                return [.questionHighlighted(ref)]
            }

        case .publishUpvotes:
            let all = changed.compactMap { id in
                questions[id].map { (question: $0, count: UpvoteCountsCount(questionId: id, upvotes: upvotes(id))) }
            }
            .sorted { $0.question.number < $1.question.number }
            guard !all.isEmpty else { return [] }
            let full = all.map(\.count)
            let room = all.filter { $0.question.state.isShownToRoom }.map(\.count)
            if room == full { return [.questionUpvotes(.init(counts: full, viewer: nil))] }
            var events: [SessionEvent] = [.questionUpvotes(.init(counts: full, viewer: .presenter))]
            if !room.isEmpty { events.append(.questionUpvotes(.init(counts: room, viewer: .room))) }
            return events
        }
    }

    // MARK: apply

    mutating func apply(_ event: SessionEvent) {
        switch event {
        case .qnaOpened(let o):
            state = .open
            moderation = o.moderation
            anonymous = o.anonymous
        case .qnaClosed:
            state = .closed
        case .questionAsked(let q):
            questions[q.question.questionId] = q.question
            askedBy[q.question.author, default: 0] += 1
            nextNumber = max(nextNumber, q.question.number + 1)
        case .questionApproved(let q):
            questions[q.question.questionId]?.state = .visible
        case .questionHidden(let r):
            questions[r.questionId]?.state = .hidden
            if highlighted == r.questionId { highlighted = nil }
        case .questionAnswered(let r):
            questions[r.questionId]?.state = .answered
            if highlighted == r.questionId { highlighted = nil }
        case .questionHighlighted(let r):
            highlighted = r.questionId
        case .questionWithdrawn(let r):
            questions[r.questionId]?.state = .withdrawn
            upvoters[r.questionId] = nil
            changed.remove(r.questionId)
            if highlighted == r.questionId { highlighted = nil }
        case .questionUpvoted(let u):
            if u.on { upvoters[u.questionId, default: []].insert(u.participantId) } else { upvoters[u.questionId]?.remove(u.participantId) }
            changed.insert(u.questionId)
        case .questionUpvotes(let c):
            // The presenter's (or everyone's) event lists every change; the room's, a subset.
            if c.viewer != .room { changed.subtract(c.counts.map(\.questionId)) }
        default:
            break
        }
    }
}

typealias UpvoteCountsCount = SessionEvent.UpvoteCounts.Count
