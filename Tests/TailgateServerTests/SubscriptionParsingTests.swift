import NIOCore
import Testing
import TailgateCore
@testable import TailgateServer

@Suite("Subscription lists, subscription messages and the renderings of many-worker streams")
struct SubscriptionParsingTests {
    private static func list(_ query: String) throws(GatewayError) -> SubscriptionList {
        try SubscriptionList(RequestTarget("/ws/streams?" + query))
    }

    private static func id(_ text: String) -> WorkerID { WorkerID(text)! }

    // MARK: Query lists

    @Test("workers, tail and resume are read in order; resume wins over tail and comes first; repeats count once")
    func goodList() throws {
        let parsed = try Self.list("workers=demo-1,strategy-*,*,demo-1&tail=5&resume=002050.SZ:abc1:120,a:b:c:zz9:7")
        let entries = parsed.entries.map { "\($0.selector) \($0.start.since.map(String.init) ?? "-") \($0.start.epoch ?? "-") \($0.start.tail.map(String.init) ?? "-")" }
        #expect(entries == [
            "002050.SZ 120 abc1 -",
            "a:b:c 7 zz9 -",
            "demo-1 - - 5",
            "strategy-* - - 5",
            "* - - 5",
        ])
    }

    @Test("a worker named by resume is not subscribed a second time by workers")
    func resumeWinsOverWorkers() throws {
        let parsed = try Self.list("workers=demo-1,demo-2&resume=demo-1:e1:10")
        #expect(parsed.entries.map(\.selector) == [.worker(Self.id("demo-1")), .worker(Self.id("demo-2"))])
        #expect(parsed.entries[0].start == SubscriptionStart(since: 10, epoch: "e1", tail: nil))
    }

    @Test("no workers at all is a valid list")
    func emptyList() throws {
        #expect(try Self.list("").entries.isEmpty)
        #expect(try Self.list("workers=").entries.isEmpty)
    }

    @Test("malformed lists are 400 bad_parameter", arguments: [
        "workers=a,,b", "workers=-bad", "workers=a*b", "workers=**", "workers=a%20b", "workers=" + String(repeating: "x", count: 129),
        "tail=-1", "tail=x", "resume=demo-1", "resume=demo-1:120", "resume=demo-1:EPOCH:1", "resume=demo-1:e:-1",
        "resume=:e:1", "resume=demo-1:e:", "resume=demo-1:e:1,", "resume=demo-1:e:99999999999999999999",
    ])
    func badList(query: String) {
        #expect(throws: GatewayError.self) { try Self.list(query) }
        do {
            _ = try Self.list(query)
        } catch {
            #expect(error.code == "bad_parameter" && error.status == .badRequest, "\(error)")
        }
    }

    @Test("patterns select by prefix; * selects every worker")
    func patterns() {
        #expect(WorkerSelector("strategy-*") == .prefix("strategy-"))
        #expect(WorkerSelector("*") == .prefix(""))
        #expect(WorkerSelector("strategy-*")!.matches(Self.id("strategy-7")))
        #expect(!WorkerSelector("strategy-*")!.matches(Self.id("demo-1")))
        #expect(WorkerSelector("*")!.matches(Self.id("demo-1")))
        #expect(WorkerSelector("demo-1")!.matches(Self.id("demo-1")))
        #expect(!WorkerSelector("demo-1")!.matches(Self.id("demo-10")))
    }

    // MARK: Messages

    private static func message(_ text: String) throws(SubscriptionMessage.Invalid) -> SubscriptionMessage {
        try SubscriptionMessage.parse(ByteBuffer(string: text))
    }

    @Test("subscribe and unsubscribe messages")
    func goodMessages() throws {
        #expect(try Self.message(#"{"type":"subscribe","workers":["demo-1","strategy-*"],"tail":100}"#)
            == .subscribe([.worker(Self.id("demo-1")), .prefix("strategy-")], SubscriptionStart(since: nil, epoch: nil, tail: 100)))
        #expect(try Self.message(#"{"type":"subscribe","workers":["demo-1"],"since":120,"epoch":"2guf0xf4wukt0"}"#)
            == .subscribe([.worker(Self.id("demo-1"))], SubscriptionStart(since: 120, epoch: "2guf0xf4wukt0", tail: nil)))
        #expect(try Self.message(#" {"workers":["*"],"type":"unsubscribe","extra":{"ignored":true}} "#) == .unsubscribe([.prefix("")]))
        #expect(try Self.message(#"{"type":"subscribe","workers":[]}"#) == .subscribe([], SubscriptionStart()))
    }

    @Test("anything else is refused with a reason", arguments: [
        "not json", "[]", #"{"workers":["a"]}"#, #"{"type":"subscribe"}"#, #"{"type":"subscribe","workers":"a"}"#,
        #"{"type":"subscribe","workers":[1]}"#, #"{"type":"subscribe","workers":["bad id"]}"#, #"{"type":"resubscribe","workers":["a"]}"#,
        #"{"type":"subscribe","workers":["a"],"since":-1}"#, #"{"type":"subscribe","workers":["a"],"tail":1.5}"#,
        #"{"type":"subscribe","workers":["a"],"tail":"5"}"#, #"{"type":"subscribe","workers":["a"],"epoch":"e1"}"#,
        #"{"type":"subscribe","workers":["a"],"since":1,"epoch":"NOT-AN-EPOCH"}"#, #"{"type":"subscribe","workers":["a"],"since":null}"#,
    ])
    func badMessages(text: String) {
        #expect(throws: SubscriptionMessage.Invalid.self) { try Self.message(text) }
    }

    // MARK: Renderings

    private static func batch(firstSeq: UInt64 = 41, count: Int = 3) -> Batch {
        var builder = BatchBuilder(firstSeq: firstSeq)
        for index in 0..<count {
            builder.append(LogRecord(message: "line \(index)"), timestamp: Timestamp(microseconds: 1_700_000_000_000_000))
        }
        return builder.finish()!
    }

    /// The payload of an unmasked, uncompressed server frame.
    private static func framePayload(_ frame: ByteBuffer) -> (opcode: UInt8, payload: String) {
        var frame = frame
        let first = frame.readInteger(as: UInt8.self)!
        var length = Int(frame.readInteger(as: UInt8.self)! & 0x7F)
        if length == 126 { length = Int(frame.readInteger(as: UInt16.self)!) } else if length == 127 { length = Int(frame.readInteger(as: UInt64.self)!) }
        #expect(frame.readableBytes == length)
        return (first, frame.readString(length: length)!)
    }

    @Test("a /ws/streams batch is one text frame of the logs message with its worker, made once per batch")
    func namedFrame() throws {
        let batch = Self.batch()
        let rendering = NamedFrameRendering(worker: Self.id("demo-1"))
        let frame = rendering.bytes(for: batch)
        let (opcode, text) = Self.framePayload(frame)
        #expect(opcode == 0x81)
        let plain = String(buffer: batch.payload)
        #expect(text == plain.replacingOccurrences(of: #"{"type":"logs","#, with: #"{"type":"logs","worker":"demo-1","#))
        let value = try JSONParser.parse(text)
        #expect(value["worker"] == .string("demo-1"))
        guard case .array(let records)? = value["records"] else { Issue.record("no records"); return }
        #expect(records.map { $0["seq"]?.intValue } == [41, 42, 43])
        // Cached in the batch under the rendering's key: a second subscriber gets the same bytes, not a new rendering.
        #expect(batch.derivedBytes(key: rendering.key) { _ in ByteBuffer(string: "rendered again") } == frame)
        #expect(rendering.key != PlainFrameRendering().key)
    }

    @Test("a partial batch (a subscriber inside a batch) names its worker too")
    func namedPartial() throws {
        let batch = Self.batch()
        let bytes = NamedFrameFormat(deflate: nil).logs(batch.payload(from: 43), worker: Self.id("w"), lastSeq: 43)
        let value = try JSONParser.parse(Self.framePayload(bytes).payload)
        #expect(value["type"] == .string("logs") && value["worker"] == .string("w"))
        guard case .array(let records)? = value["records"] else { Issue.record("no records"); return }
        #expect(records.map { $0["seq"]?.intValue } == [43])
    }

    @Test("one worker's events carry id: EPOCH:SEQ (the run and the last seq); many workers' events carry no id and name the worker")
    func eventRenderings() throws {
        let batch = Self.batch()
        let single = String(buffer: WorkerEventRendering(epoch: "abc123").bytes(for: batch))
        #expect(single == "id: abc123:43\ndata: " + String(buffer: batch.payload) + "\n\n")
        let many = String(buffer: NamedEventRendering(worker: Self.id("demo-2")).bytes(for: batch))
        #expect(many.hasPrefix("data: {\"type\":\"logs\",\"worker\":\"demo-2\",\"records\":[{\"seq\":41,"))
        #expect(many.hasSuffix("]}\n\n") && !many.contains("id:"))
        #expect(WorkerEventRendering(epoch: "abc123").key != NamedEventRendering(worker: Self.id("x")).key)

        let hello = ByteBuffer(string: #"{"type":"hello"}"#)
        let singleFormat = EventFormat(singleWorkerEpoch: "abc123")
        #expect(String(buffer: singleFormat.control(hello, lastSeq: 40)) == "id: abc123:40\ndata: {\"type\":\"hello\"}\n\n")
        #expect(String(buffer: singleFormat.control(hello, lastSeq: nil)) == "data: {\"type\":\"hello\"}\n\n")
        #expect(String(buffer: EventFormat(singleWorkerEpoch: nil).control(hello, lastSeq: 40)) == "data: {\"type\":\"hello\"}\n\n")
        #expect(String(buffer: singleFormat.logs(batch.payload(from: 42), worker: Self.id("x"), lastSeq: 43))
            == "id: abc123:43\ndata: " + String(buffer: batch.payload(from: 42)) + "\n\n")
    }

    @Test("Last-Event-ID: EPOCH:SEQ (as the events' id carries it) or a plain SEQ; anything else is refused")
    func lastEventID() {
        #expect(EventStreamEndpoint.lastEventIDValue("abc123:40")! == ("abc123", 40))
        #expect(EventStreamEndpoint.lastEventIDValue("40")! == (nil, 40))
        #expect(EventStreamEndpoint.lastEventIDValue("0")! == (nil, 0))
        for bad in ["", ":40", "abc123:", "ABC:40", "abc:4x", "abc:1:2", "soon", "-1", "9223372036854775808", "a b:1",
                    String(repeating: "a", count: 33) + ":1"] {
            #expect(EventStreamEndpoint.lastEventIDValue(bad) == nil, "\(bad)")
        }
    }

    @Test("a query follows at most 100 patterns (400 bad_parameter beyond, naming the first pattern over)")
    func patternLimitInQuery() throws {
        let hundred = (0..<100).map { "p\($0)-*" }.joined(separator: ",")
        #expect(try SubscriptionList(RequestTarget("/ws/streams?workers=\(hundred),a,b,p0-*")).entries.count == 102)
        do throws(GatewayError) {
            _ = try SubscriptionList(RequestTarget("/api/streams/events?workers=\(hundred),extra-*"))
            Issue.record("101 patterns were accepted")
        } catch {
            #expect(error.code == "bad_parameter" && error.message.contains("extra-*"), "\(error.message)")
        }
    }

    @Test("gap, unsubscribed and error messages name their worker")
    func controlMessages() throws {
        let gap = try JSONParser.parse(String(buffer: StreamMessages.gap(worker: Self.id("demo-1"), from: 120, to: 4120)))
        #expect(gap == .object(["type": .string("gap"), "worker": .string("demo-1"), "from": .number(120), "to": .number(4120),
                                "reason": .string("evicted")]))
        let unsubscribed = try JSONParser.parse(String(buffer: StreamMessages.unsubscribed(worker: Self.id("demo-1"))))
        #expect(unsubscribed == .object(["type": .string("unsubscribed"), "worker": .string("demo-1")]))
        let error = try JSONParser.parse(String(buffer: StreamMessages.subscriptionError(worker: "no\"pe", code: "worker_not_found", message: "no worker")))
        #expect(error == .object(["type": .string("error"), "worker": .string("no\"pe"), "code": .string("worker_not_found"),
                                  "message": .string("no worker")]))
    }
}
