import TailgateCore

/// What a subscription names: one worker, or every worker whose id starts with a prefix (`strategy-*`;
/// `*` alone: every worker).
enum WorkerSelector: Hashable, CustomStringConvertible {
    case worker(WorkerID)
    /// The prefix before `*` (empty for `*`).
    case prefix(String)

    /// Reads an id or a pattern; `nil` when `text` is neither.
    init?(_ text: some StringProtocol) {
        if text.hasSuffix("*") {
            let prefix = text.dropLast()
            guard prefix.isEmpty || WorkerID.isValid(prefix.utf8) else { return nil }
            self = .prefix(String(prefix))
        } else {
            guard let id = WorkerID(text) else { return nil }
            self = .worker(id)
        }
    }

    /// Whether the worker `id` is selected.
    func matches(_ id: WorkerID) -> Bool {
        switch self {
        case .worker(let worker): worker == id
        case .prefix(let prefix): id.rawValue.hasPrefix(prefix)
        }
    }

    var description: String {
        switch self {
        case .worker(let id): id.rawValue
        case .prefix(let prefix): prefix + "*"
        }
    }

    static let expectation = "a worker id, or an id prefix followed by '*' (e.g. strategy-*), or '*' alone"
}

/// Where a subscription starts, as the client asked: after `since` (in run `epoch`, when given), else
/// the newest `tail` records, else the newest `--default-tail` records.
struct SubscriptionStart: Equatable {
    var since: UInt64?
    var epoch: String?
    var tail: Int?
}

/// A subscription list from a query: `workers=a,b,strategy-*`, `tail=N`, `resume=ID:EPOCH:SEQ,…`
/// (`/ws/streams`, `/api/streams/events`).
struct SubscriptionList: Equatable {
    /// What to subscribe, in the order given; workers named by `resume` come first.
    var entries: [(selector: WorkerSelector, start: SubscriptionStart)]

    static func == (lhs: SubscriptionList, rhs: SubscriptionList) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.selector == $1.selector && $0.start == $1.start }
    }

    /// Reads the list from `target`; throws 400 `bad_parameter` for a malformed `workers`, `tail` or
    /// `resume`, or more than `SubscriptionSet.maxPatterns` patterns.
    init(_ target: RequestTarget) throws(GatewayError) {
        let tail = try target.unsignedValue("tail", max: 1_000_000_000).map { Int($0) }
        var entries: [(selector: WorkerSelector, start: SubscriptionStart)] = []
        var resumed: Set<WorkerID> = []
        if let text = target.value("resume"), !text.isEmpty {
            for item in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let (id, epoch, seq) = Self.resumeEntry(item) else {
                    throw .badParameter("resume", "expected ID:EPOCH:SEQ entries separated by commas, got '\(item.prefix(160))'")
                }
                guard resumed.insert(id).inserted else { continue }
                entries.append((.worker(id), SubscriptionStart(since: seq, epoch: epoch, tail: nil)))
            }
        }
        var seen: Set<WorkerSelector> = []
        var patterns = 0
        if let text = target.value("workers"), !text.isEmpty {
            for item in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let selector = WorkerSelector(item) else {
                    throw .badParameter("workers", "expected \(WorkerSelector.expectation) in a comma-separated list, got '\(item.prefix(160))'")
                }
                // `resume` wins over `tail` for the workers it names; a repeated entry counts once.
                if case .worker(let id) = selector, resumed.contains(id) { continue }
                guard seen.insert(selector).inserted else { continue }
                if case .prefix = selector {
                    patterns += 1
                    guard patterns <= SubscriptionSet.maxPatterns else {
                        throw .badParameter("workers", "at most \(SubscriptionSet.maxPatterns) patterns per connection, got more ('\(item.prefix(160))' is beyond)")
                    }
                }
                entries.append((selector, SubscriptionStart(since: nil, epoch: nil, tail: tail)))
            }
        }
        self.entries = entries
    }

    /// `ID:EPOCH:SEQ`, read from the right (ids may hold `:`).
    static func resumeEntry(_ text: Substring) -> (WorkerID, String, UInt64)? {
        guard let seqColon = text.lastIndex(of: ":") else { return nil }
        let seqText = text[text.index(after: seqColon)...]
        let rest = text[..<seqColon]
        guard let epochColon = rest.lastIndex(of: ":") else { return nil }
        let epoch = rest[rest.index(after: epochColon)...]
        guard let id = WorkerID(rest[..<epochColon]), RunID.isValidEpoch(epoch),
              !seqText.isEmpty, seqText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let seq = UInt64(seqText), seq <= UInt64(Int64.max)
        else { return nil }
        return (id, String(epoch), seq)
    }
}
