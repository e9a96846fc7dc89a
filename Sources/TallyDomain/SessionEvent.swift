/// Everything that happens to a session, as facts. The event log stores these; the in-memory
/// session state is rebuilt from them (`SessionState.apply`), and clients receive their public
/// form (`publicPayload`) filtered by `audience`.
public enum SessionEvent: Sendable, Equatable {
    case sessionCreated(SessionCreated)
    case sessionEnded(SessionEnded)
    case pollCreated(PollPayload)
    case pollOpened(PollPayload)
    case pollClosed(PollRef)
    case pollRevealed(PollRevealed)
    case pollResults(ResultsPublished)
    case participantJoined(ParticipantJoined)
    case ballotCast(BallotCast)

    public struct SessionCreated: Codable, Sendable, Equatable {
        public var sessionId: SessionID
        public var title: String
        public var joinCode: JoinCode
        public init(sessionId: SessionID, title: String, joinCode: JoinCode) {
            self.sessionId = sessionId
            self.title = title
            self.joinCode = joinCode
        }
    }

    public struct SessionEnded: Codable, Sendable, Equatable {
        public var sessionId: SessionID
        public init(sessionId: SessionID) {
            self.sessionId = sessionId
        }
    }

    public struct PollPayload: Codable, Sendable, Equatable {
        public var poll: Poll
        public init(poll: Poll) {
            self.poll = poll
        }
    }

    public struct PollRef: Codable, Sendable, Equatable {
        public var pollId: PollID
        public init(pollId: PollID) {
            self.pollId = pollId
        }
    }

    public struct PollRevealed: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var results: PollResults
        public init(pollId: PollID, results: PollResults) {
            self.pollId = pollId
            self.results = results
        }
    }

    /// A coalesced snapshot of one poll's counts. `visibleToParticipants` is decided when the
    /// event is made, so replaying it later routes it exactly as it was routed live.
    public struct ResultsPublished: Codable, Sendable, Equatable {
        public var results: PollResults
        public var visibleToParticipants: Bool
        public init(results: PollResults, visibleToParticipants: Bool) {
            self.results = results
            self.visibleToParticipants = visibleToParticipants
        }
    }

    public struct ParticipantJoined: Codable, Sendable, Equatable {
        public var participantId: ParticipantID
        public var participantCount: Int
        public init(participantId: ParticipantID, participantCount: Int) {
            self.participantId = participantId
            self.participantCount = participantCount
        }
    }

    /// One participant's ballot; it replaces any earlier ballot of theirs on the same poll.
    public struct BallotCast: Codable, Sendable, Equatable {
        public var pollId: PollID
        public var participantId: ParticipantID
        public var optionIds: [OptionID]
        public init(pollId: PollID, participantId: ParticipantID, optionIds: [OptionID]) {
            self.pollId = pollId
            self.participantId = participantId
            self.optionIds = optionIds
        }
    }

    /// The wire name of the event (`eventType` in the envelope).
    public var type: String {
        switch self {
        case .sessionCreated: "session.created"
        case .sessionEnded: "session.ended"
        case .pollCreated: "poll.created"
        case .pollOpened: "poll.opened"
        case .pollClosed: "poll.closed"
        case .pollRevealed: "poll.revealed"
        case .pollResults: "poll.results"
        case .participantJoined: "participant.joined"
        case .ballotCast: "ballot.cast"
        }
    }

    /// Which roles receive this event. Drafts go to the presenter only; counts of a hidden poll
    /// never reach participants; single ballots reach nobody (only aggregated results do).
    public var audience: Audience {
        switch self {
        case .sessionCreated, .sessionEnded, .pollOpened, .pollClosed, .pollRevealed: .everyone
        case .pollCreated: .presenter
        case .pollResults(let r): r.visibleToParticipants ? .everyone : [.presenter, .display]
        case .participantJoined: [.presenter, .display]
        case .ballotCast: .nobody
        }
    }
}

// MARK: - Storage and wire encoding

extension SessionEvent {
    /// The full fact, as stored in the event log.
    public var storedPayload: any Encodable & Sendable {
        switch self {
        case .sessionCreated(let p): p
        case .sessionEnded(let p): p
        case .pollCreated(let p): p
        case .pollOpened(let p): p
        case .pollClosed(let p): p
        case .pollRevealed(let p): p
        case .pollResults(let p): p
        case .participantJoined(let p): p
        case .ballotCast(let p): p
        }
    }

    /// What a client sees in the envelope's `payload`. Identical to the stored fact except
    /// where the fact holds something no client should learn (which participant joined).
    public var publicPayload: any Encodable & Sendable {
        switch self {
        case .participantJoined(let p): PublicParticipantCount(participantCount: p.participantCount)
        case .pollResults(let p): p.results
        default: storedPayload
        }
    }

    struct PublicParticipantCount: Codable, Sendable {
        var participantCount: Int
    }

    public enum DecodeError: Error, Equatable {
        case unknownType(String)
    }

    /// Rebuilds an event from its stored type name and payload.
    public static func decode(type: String, using decoder: some PayloadDecoder) throws -> SessionEvent {
        func d<T: Decodable>(_: T.Type) throws -> T { try decoder.decode(T.self) }
        switch type {
        case "session.created": return .sessionCreated(try d(SessionCreated.self))
        case "session.ended": return .sessionEnded(try d(SessionEnded.self))
        case "poll.created": return .pollCreated(try d(PollPayload.self))
        case "poll.opened": return .pollOpened(try d(PollPayload.self))
        case "poll.closed": return .pollClosed(try d(PollRef.self))
        case "poll.revealed": return .pollRevealed(try d(PollRevealed.self))
        case "poll.results": return .pollResults(try d(ResultsPublished.self))
        case "participant.joined": return .participantJoined(try d(ParticipantJoined.self))
        case "ballot.cast": return .ballotCast(try d(BallotCast.self))
        default: throw DecodeError.unknownType(type)
        }
    }
}

/// Decodes one stored payload; the event log supplies one backed by its JSON bytes.
public protocol PayloadDecoder {
    func decode<T: Decodable>(_ type: T.Type) throws -> T
}
