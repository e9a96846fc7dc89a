import TallyDomain

extension TallyRequestContext {
    /// The `{pollId}` of the path, if it could be one (the session's rules say whether it exists).
    func pollId() throws -> PollID {
        let id = parameters.get("pollId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id) else { throw Problem(.notFound, "no poll with that id in this session") }
        return id
    }

    func answerId() throws -> AnswerID {
        let id = parameters.get("answerId") ?? ""
        guard IdentifierAlphabet.isWellFormed(id) else { throw Problem(.notFound, "no answer with that id in this poll") }
        return id
    }
}
