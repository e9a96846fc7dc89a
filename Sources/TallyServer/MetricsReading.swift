import Foundation

/// One reading of the server's own Prometheus registry, parsed from the text `/metrics` serves.
///
/// The operator's console reads its counters and the delivery-latency histogram this way
/// rather than keeping counts of its own beside them: one source of truth, so the console and
/// a scraper can never disagree. Pure: text in, numbers out.
struct MetricsReading: Sendable {
    struct Sample: Sendable, Equatable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    let samples: [Sample]

    /// Parses the Prometheus text exposition format (comments skipped, anything malformed
    /// ignored line by line).
    init(text: String) {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else {
                samples.append(Sample(name: String(series), labels: [:], value: value))
                continue
            }
            guard series.hasSuffix("}") else { continue }
            var labels: [String: String] = [:]
            // Tally's label values are plain words and numbers (no commas or quotes inside).
            for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { continue }
                labels[String(kv[0])] = String(kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
            }
            samples.append(Sample(name: String(series[..<brace]), labels: labels, value: value))
        }
        self.samples = samples
    }

    /// The sum of every series of `name` whose labels include `matching` (0 when none).
    func sum(_ name: String, matching: [String: String] = [:]) -> Double {
        samples.reduce(0) { total, sample in
            sample.name == name && matching.allSatisfy { sample.labels[$0.key] == $0.value } ? total + sample.value : total
        }
    }

    /// A histogram's cumulative buckets, by upper bound (the last one +Inf).
    func histogram(_ name: String) -> [HistogramBucket] {
        samples.compactMap { sample in
            guard sample.name == name + "_bucket", let le = sample.labels["le"] else { return nil }
            let bound = le == "+Inf" ? Double.infinity : Double(le)
            return bound.map { HistogramBucket(upperBound: $0, count: sample.value) }
        }
        .sorted { $0.upperBound < $1.upperBound }
    }
}

/// One cumulative bucket: how many observations were at most `upperBound`.
struct HistogramBucket: Sendable, Equatable {
    let upperBound: Double
    let count: Double
}

enum Histograms {
    /// The observations between two readings of one histogram: `now − then`, bucket by bucket
    /// (a histogram only grows, so this is the histogram of that window).
    static func window(now: [HistogramBucket], then: [HistogramBucket]) -> [HistogramBucket] {
        let before = Dictionary(then.map { ($0.upperBound, $0.count) }, uniquingKeysWith: max)
        return now.map { HistogramBucket(upperBound: $0.upperBound, count: max(0, $0.count - (before[$0.upperBound] ?? 0))) }
    }

    /// The `q` quantile (0…1) of cumulative buckets, as Prometheus' `histogram_quantile` does it:
    /// linear within the bucket that holds the rank; in the +Inf bucket, the highest finite bound.
    /// Nil when the window holds no observations.
    static func quantile(_ q: Double, of buckets: [HistogramBucket]) -> Double? {
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = q * total
        var lowerBound = 0.0
        var below = 0.0
        for bucket in buckets {
            if bucket.count >= rank, bucket.count > below {
                guard bucket.upperBound.isFinite else { return lowerBound }
                return lowerBound + (bucket.upperBound - lowerBound) * (rank - below) / (bucket.count - below)
            }
            if bucket.upperBound.isFinite { lowerBound = bucket.upperBound }
            below = bucket.count
        }
        return lowerBound
    }
}
