/// One poll's ballots and what they add up to, kept incrementally: casting or replacing a
/// ballot costs O(size of the ballot), and results cost O(options) — O(distinct words) or
/// O(answers shown) for written kinds — never O(ballots).
///
/// Also holds the presenter's moderation of written answers (hidden words and answers,
/// approved answers), because it changes what results show.
struct PollTally: Sendable, Equatable {
    private(set) var ballots: [ParticipantID: Ballot] = [:]
    /// Choice polls: ballots per option.
    private var optionCounts: [OptionID: Int] = [:]
    /// Scale polls: ballots per value.
    private var valueCounts: [Int: Int] = [:]
    /// Ranking polls: Borda points and the sum of ranks (1 = first) per option.
    private var points: [OptionID: Int] = [:]
    private var rankSums: [OptionID: Int] = [:]
    /// Word clouds: per key, how many ballots hold it and how it was spelled.
    private var words: [String: WordTally] = [:]
    private var blockedWords: Set<String> = []
    private(set) var hiddenWords: Set<String> = []
    /// Open polls: every answer by id, and by number (numbers only grow; a replaced answer
    /// leaves a gap). Walking the numbers gives newest-first and oldest-first without ever
    /// keeping a sorted list, which a restart would otherwise rebuild one insert at a time.
    private var answers: [AnswerID: (answer: Ballot.Answer, author: ParticipantID)] = [:]
    private var answerNumbers: [Int: AnswerID] = [:]
    /// The number of every answer ever given, replaced ones included, so a page cursor naming
    /// an answer that was since replaced still knows where it stood.
    private var numberOfAnswer: [AnswerID: Int] = [:]
    private(set) var hiddenAnswers: Set<AnswerID> = []
    private(set) var approvedAnswers: Set<AnswerID> = []
    /// The number the next answer gets (one more than any seen).
    private(set) var nextAnswerNumber = 1

    struct WordTally: Sendable, Equatable {
        var count = 0
        var spellings: [String: Int] = [:]

        /// The most used spelling; of equally used ones, the first in code-point order, so every
        /// replay shows the same.
        var display: String {
            spellings.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }?.key ?? ""
        }
    }

    static func == (a: PollTally, b: PollTally) -> Bool {
        a.ballots == b.ballots && a.hiddenWords == b.hiddenWords && a.hiddenAnswers == b.hiddenAnswers
            && a.approvedAnswers == b.approvedAnswers && a.nextAnswerNumber == b.nextAnswerNumber
    }

    func ballot(of participant: ParticipantID) -> Ballot? { ballots[participant] }

    func answer(_ id: AnswerID) -> (answer: Ballot.Answer, author: ParticipantID)? { answers[id] }

    func hasWord(_ key: String) -> Bool { (words[key]?.count ?? 0) > 0 }

    // MARK: changes

    /// Records `ballot` as the participant's, replacing their earlier one.
    mutating func cast(_ ballot: Ballot, by participant: ParticipantID) {
        if let previous = ballots[participant] { count(previous, by: participant, sign: -1) }
        count(ballot, by: participant, sign: 1)
        ballots[participant] = ballot
    }

    private mutating func count(_ ballot: Ballot, by participant: ParticipantID, sign: Int) {
        switch ballot {
        case .choice(let ids):
            for id in ids { optionCounts[id, default: 0] += sign }
        case .scale(let value):
            valueCounts[value, default: 0] += sign
        case .ranking(let ids):
            for (index, id) in ids.enumerated() {
                points[id, default: 0] += sign * (ids.count - 1 - index)
                rankSums[id, default: 0] += sign * (index + 1)
            }
        case .words(let list):
            for word in list {
                var tally = words[word.key] ?? WordTally()
                tally.count += sign
                tally.spellings[word.text, default: 0] += sign
                if tally.spellings[word.text] == 0 { tally.spellings[word.text] = nil }
                words[word.key] = tally.count > 0 ? tally : nil
                if word.isBlocked { blockedWords.insert(word.key) }
            }
        case .answers(let list):
            if sign > 0 {
                for answer in list {
                    answers[answer.answerId] = (answer, participant)
                    answerNumbers[answer.number] = answer.answerId
                    numberOfAnswer[answer.answerId] = answer.number
                    nextAnswerNumber = max(nextAnswerNumber, answer.number + 1)
                }
            } else {
                for answer in list {
                    answers[answer.answerId] = nil
                    answerNumbers[answer.number] = nil
                }
            }
        }
    }

    mutating func setWord(_ key: String, hidden: Bool) {
        if hidden { hiddenWords.insert(key) } else { hiddenWords.remove(key) }
    }

    mutating func setAnswer(_ id: AnswerID, hidden: Bool) {
        if hidden { hiddenAnswers.insert(id) } else { hiddenAnswers.remove(id) }
    }

    mutating func approveAnswer(_ id: AnswerID) {
        approvedAnswers.insert(id)
    }

    // MARK: results

    /// Whether the room may see an answer: not hidden, not blocked, and approved when the poll
    /// is pre-moderated.
    func answerIsShown(_ answer: Ballot.Answer, in poll: Poll) -> Bool {
        !hiddenAnswers.contains(answer.answerId) && !answer.isBlocked && (!poll.premoderated || approvedAnswers.contains(answer.answerId))
    }

    func wordIsShown(_ key: String) -> Bool {
        !hiddenWords.contains(key) && !blockedWords.contains(key)
    }

    /// `complete`: every word and answer, not cut to `ResultsBudget` (for exports, never the wire).
    func results(of poll: Poll, for viewer: ResultsViewer, complete: Bool = false) -> PollResults {
        var r = PollResults(pollId: poll.id, totalBallots: ballots.count)
        switch poll.kind {
        case .single, .multiple:
            r.counts = poll.options.map { .init(optionId: $0.id, count: optionCounts[$0.id] ?? 0) }
        case .scale:
            let range = poll.scale?.values ?? 1...5
            r.distribution = range.map { .init(value: $0, count: valueCounts[$0] ?? 0) }
            (r.mean, r.median) = Self.meanAndMedian(r.distribution!)
        case .ranking:
            let n = ballots.count
            r.options = poll.options.enumerated()
                .map { index, option in
                    (
                        index,
                        PollResults.RankedOption(
                            optionId: option.id, points: points[option.id] ?? 0,
                            averageRank: n == 0 ? nil : Self.rounded(Double(rankSums[option.id] ?? 0) / Double(n)))
                    )
                }
                .sorted { $0.1.points != $1.1.points ? $0.1.points > $1.1.points : $0.0 < $1.0 }
                .map(\.1)
        case .wordcloud:
            r.words = wordResults(for: viewer, complete: complete)
            r.distinctWords = words.keys.reduce(0) { $0 + (viewer == .presenter || wordIsShown($1) ? 1 : 0) }
        case .open:
            (r.answers, r.totalAnswers) = answerResults(of: poll, for: viewer, complete: complete)
        }
        return r
    }

    private func wordResults(for viewer: ResultsViewer, complete: Bool) -> [PollResults.WordCount] {
        let ranked = words.filter { viewer == .presenter || wordIsShown($0.key) }
            .sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
        var list: [PollResults.WordCount] = []
        var spent = 0
        for (key, tally) in ranked.prefix(complete ? .max : ResultsBudget.maxWords) {
            let text = tally.display
            spent += WrittenText.jsonBytes(text) + ResultsBudget.wordOverhead
            guard complete || spent <= ResultsBudget.entryBytes else { break }
            var entry = PollResults.WordCount(text: text, count: tally.count)
            if viewer == .presenter {
                if hiddenWords.contains(key) { entry.hidden = true }
                if blockedWords.contains(key) { entry.blocked = true }
            }
            list.append(entry)
        }
        return list
    }

    private func answerResults(of poll: Poll, for viewer: ResultsViewer, complete: Bool) -> ([PollResults.AnswerEntry], Int) {
        var list: [PollResults.AnswerEntry] = []
        var spent = 0
        var total = 0
        var full = false
        for number in stride(from: nextAnswerNumber - 1, through: 1, by: -1) {
            guard let id = answerNumbers[number], let answer = answers[id]?.answer else { continue }
            let shown = answerIsShown(answer, in: poll)
            guard viewer == .presenter || shown else { continue }
            total += 1
            guard !full else { continue }
            spent += WrittenText.jsonBytes(answer.text) + ResultsBudget.answerOverhead
            guard complete || (list.count < ResultsBudget.maxAnswers && spent <= ResultsBudget.entryBytes) else {
                full = true
                continue
            }
            list.append(entry(answer, of: poll, for: viewer))
        }
        return (list, total)
    }

    func entry(_ answer: Ballot.Answer, of poll: Poll, for viewer: ResultsViewer) -> PollResults.AnswerEntry {
        var entry = PollResults.AnswerEntry(answerId: answer.answerId, text: answer.text)
        if viewer == .presenter {
            if hiddenAnswers.contains(answer.answerId) { entry.hidden = true }
            if poll.premoderated, !approvedAnswers.contains(answer.answerId) { entry.pending = true }
            if answer.isBlocked { entry.blocked = true }
        }
        return entry
    }

    /// Answers oldest first, after `after` (exclusive), as `viewer` may see them; nil when
    /// `after` names no answer this poll ever had.
    func answerPage(of poll: Poll, for viewer: ResultsViewer, after: AnswerID?, limit: Int) -> (
        [PollResults.AnswerEntry], next: AnswerID?
    )? {
        var number = 1
        if let after {
            guard let known = numberOfAnswer[after] else { return nil }
            number = known + 1
        }
        var page: [PollResults.AnswerEntry] = []
        var more = false
        while number < nextAnswerNumber {
            defer { number += 1 }
            guard let id = answerNumbers[number], let answer = answers[id]?.answer,
                viewer == .presenter || answerIsShown(answer, in: poll)
            else { continue }
            guard page.count < limit else {
                more = true
                break
            }
            page.append(entry(answer, of: poll, for: viewer))
        }
        return (page, more ? page.last?.answerId : nil)
    }

    static func rounded(_ x: Double) -> Double { (x * 100).rounded() / 100 }

    static func meanAndMedian(_ distribution: [PollResults.ValueCount]) -> (Double?, Double?) {
        let n = distribution.reduce(0) { $0 + $1.count }
        guard n > 0 else { return (nil, nil) }
        let sum = distribution.reduce(0) { $0 + $1.value * $1.count }
        // The median of n sorted values: the middle one, or the mean of the two middle ones.
        func nth(_ k: Int) -> Int {
            var seen = 0
            for bucket in distribution {
                seen += bucket.count
                if seen > k { return bucket.value }
            }
            return distribution.last!.value
        }
        let median = n % 2 == 1 ? Double(nth(n / 2)) : Double(nth(n / 2 - 1) + nth(n / 2)) / 2
        return (rounded(Double(sum) / Double(n)), median)
    }
}
