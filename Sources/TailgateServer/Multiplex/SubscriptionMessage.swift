import NIOCore
import TailgateCore

/// A message a client sends on `/ws/streams`:
/// `{"type":"subscribe","workers":["demo-1","strategy-*"],"tail":100}`,
/// `{"type":"subscribe","workers":["demo-1"],"since":120,"epoch":"2guf0xf4wukt0"}`,
/// `{"type":"unsubscribe","workers":["demo-1"]}`. Members it does not know are ignored.
enum SubscriptionMessage: Equatable {
    case subscribe([WorkerSelector], SubscriptionStart)
    case unsubscribe([WorkerSelector])

    /// Why a message was refused: the reason of the 1007 close.
    struct Invalid: Error, Equatable {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Reads one text message.
    static func parse(_ message: ByteBuffer) throws(Invalid) -> SubscriptionMessage {
        let parsed = message.withUnsafeReadableBytes { raw in
            Result { () throws(JSONParseError) in try JSONParser.parse(raw.assumingMemoryBound(to: UInt8.self)) }
        }
        guard case .success(let value) = parsed else { throw Invalid("not JSON") }
        guard case .object = value else { throw Invalid("expected a JSON object") }
        guard let type = value["type"]?.stringValue else { throw Invalid("missing \"type\"") }
        guard case .array(let items)? = value["workers"] else { throw Invalid("\"workers\" must be an array of ids or patterns") }
        var selectors: [WorkerSelector] = []
        for item in items {
            guard let text = item.stringValue, let selector = WorkerSelector(text) else {
                throw Invalid("bad worker id or pattern in \"workers\"")
            }
            selectors.append(selector)
        }
        switch type {
        case "subscribe":
            let since = try count("since", in: value)
            let tail = try count("tail", in: value)
            var epoch: String?
            if let epochValue = value["epoch"] {
                guard let text = epochValue.stringValue, RunID.isValidEpoch(text) else { throw Invalid("bad \"epoch\"") }
                guard since != nil else { throw Invalid("\"epoch\" needs \"since\"") }
                epoch = text
            }
            if let tail, tail > 1_000_000_000 { throw Invalid("\"tail\" over 1000000000") }
            return .subscribe(selectors, SubscriptionStart(since: since.map { UInt64($0) }, epoch: epoch, tail: tail))
        case "unsubscribe":
            return .unsubscribe(selectors)
        default:
            throw Invalid("unknown message type")
        }
    }

    /// A member that must be a whole number ≥ 0 when present.
    private static func count(_ name: String, in value: JSONValue) throws(Invalid) -> Int? {
        guard let member = value[name] else { return nil }
        guard let number = member.intValue, number >= 0 else { throw Invalid("\"\(name)\" must be a whole number >= 0") }
        return number
    }
}
