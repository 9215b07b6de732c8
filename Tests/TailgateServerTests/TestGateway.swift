import NIOCore
import NIOPosix
import Testing
import TailgateCore
import TailgateServer

// Every integration test of the server, run one after another: each starts its own gateway on real
// loopback sockets, and running them side by side on a two-core machine would make their timeouts
// (handshake, stall) race the other tests' load.
@Suite(.serialized)
struct GatewayIntegrationTests {}

/// A gateway started for one test: its own event loops, bus and port 0.
struct TestGateway: Sendable {
    let server: GatewayServer
    let bus: LogBus
    /// The loops the server and the bus run on.
    let group: MultiThreadedEventLoopGroup
    /// The loops the test's clients run on (separate, so a busy server does not slow the clients' reads).
    let clientGroup: MultiThreadedEventLoopGroup

    var port: Int { server.port }
    var statistics: GatewayStatistics { server.statistics }

    /// Registers an in-process worker.
    func register(_ id: String) throws -> Worker {
        try bus.register(WorkerID(id)!)
    }

    /// Opens a stream with the NIO WebSocket client.
    func subscribe(
        _ path: String, headers: [(String, String)] = [], hostHeader: String? = nil, timeout: Duration = .seconds(10)
    ) async throws -> WebSocketTestClient {
        try await WebSocketTestClient.connect(port: port, path: path, headers: headers, hostHeader: hostHeader,
                                              group: clientGroup, timeout: timeout)
    }

    /// `GET path`.
    func get(_ path: String, headers: [(String, String)] = [], method: String = "GET") async throws -> HTTPTestResponse {
        try await HTTPTestClient.get(port: port, path, headers: headers, method: method, group: clientGroup)
    }

    /// A raw TCP connection to the gateway.
    func rawConnection(receiveBufferSize: Int? = nil, autoRead: Bool = true) async throws -> RawTCPClient {
        try await RawTCPClient.connect(port: port, group: clientGroup, receiveBufferSize: receiveBufferSize, autoRead: autoRead)
    }

    /// A stream opened by hand over a raw TCP connection (past the `101`).
    func rawStream(_ path: String, receiveBufferSize: Int? = nil, autoRead: Bool = true) async throws -> RawTCPClient {
        try await RawWebSocket.open(port: port, path: path, group: clientGroup, receiveBufferSize: receiveBufferSize, autoRead: autoRead)
    }

    /// Checks that the gateway still serves a new client normally: `/healthz` and a stream's `hello`.
    func expectStillServing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let health = try await get("/healthz")
        #expect(health.status == 200, sourceLocation: sourceLocation)
        let id = "still-serving-\(UInt32.random(in: 0...UInt32.max))"
        let worker = try register(id)
        worker.publish(.info, "probe")
        let client = try await subscribe("/ws/workers/\(id)?tail=10")
        let hello = try await client.nextMessage()
        #expect(hello["type"] == .string("hello"), sourceLocation: sourceLocation)
        worker.stop()
        var transcript = StreamTranscript(hello: hello)
        try await transcript.readToEnd(client)
        #expect(transcript.violations.isEmpty, "\(transcript.violations)", sourceLocation: sourceLocation)
        #expect(transcript.closeCode == 1000, sourceLocation: sourceLocation)
    }
}

/// Starts a gateway on `127.0.0.1:0`, runs `body`, then shuts the gateway and its loops down.
func withGateway<T: Sendable>(
    serverThreads: Int = 1,
    bus busConfiguration: BusConfiguration = BusConfiguration(),
    store: RunStore? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (TestGateway) async throws -> T
) async throws -> T {
    var configuration = ServerConfiguration()
    configuration.port = 0
    configuration.host = "127.0.0.1"
    configuration.publicDirectory = "/nonexistent/tailgate-tests-public"
    configure(&configuration)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: serverThreads)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let bus = try LogBus(configuration: busConfiguration, eventLoopGroup: group, store: store)
    let server: GatewayServer
    do {
        server = try await GatewayServer.start(configuration: configuration, bus: bus, group: group)
    } catch {
        try? await clientGroup.shutdownGracefully()
        try? await group.shutdownGracefully()
        throw error
    }
    let gateway = TestGateway(server: server, bus: bus, group: group, clientGroup: clientGroup)
    let result: Result<T, any Error>
    do {
        result = .success(try await body(gateway))
    } catch {
        result = .failure(error)
    }
    await server.shutdown(timeout: .seconds(2))
    if store != nil { bus.close() }
    try? await clientGroup.shutdownGracefully()
    try? await group.shutdownGracefully()
    return try result.get()
}

/// One connection's stream as seen by a client, checked against the protocol's invariant: after
/// `hello`, `logs` and `gap` messages cover exactly `replay_from, replay_from + 1, …`.
struct StreamTranscript: Sendable {
    let hello: JSONValue
    /// The hello's `replay_from`.
    let replayFrom: UInt64
    /// The next seq the stream must cover.
    private(set) var nextSeq: UInt64
    /// Every record received (when `keepRecords`).
    private(set) var records: [JSONValue] = []
    private(set) var recordCount = 0
    private(set) var logsMessages = 0
    private(set) var gaps: [(from: UInt64, to: UInt64)] = []
    private(set) var end: JSONValue?
    private(set) var closeCode: UInt16?
    private(set) var violations: [String] = []
    private let keepRecords: Bool

    init(hello: JSONValue, keepRecords: Bool = true) {
        self.hello = hello
        self.keepRecords = keepRecords
        let replayFrom = hello["replay_from"]?.intValue.map(UInt64.init) ?? 0
        self.replayFrom = replayFrom
        nextSeq = replayFrom
        if hello["type"] != .string("hello") { violations.append("first message is not hello: \(hello)") }
        if replayFrom == 0 { violations.append("hello without a valid replay_from: \(hello)") }
    }

    /// The seqs of the records received.
    var seqs: [UInt64] { records.compactMap { $0["seq"]?.intValue.map(UInt64.init) } }
    /// The last seq covered so far (`replay_from - 1` before anything).
    var lastCovered: UInt64 { nextSeq - 1 }

    /// Checks and records one message after `hello`.
    mutating func observe(_ message: JSONValue) {
        if end != nil { violations.append("message after end: \(message)") }
        switch message["type"]?.stringValue {
        case "logs":
            logsMessages += 1
            guard case .array(let batch)? = message["records"], !batch.isEmpty else {
                violations.append("logs without records")
                return
            }
            for record in batch {
                guard let seq = record["seq"]?.intValue.map(UInt64.init) else {
                    violations.append("record without seq")
                    continue
                }
                if seq != nextSeq { violations.append("record \(seq) where \(nextSeq) was due") }
                nextSeq = seq + 1
                recordCount += 1
                if keepRecords { records.append(record) }
            }
        case "gap":
            guard let from = message["from"]?.intValue.map(UInt64.init), let to = message["to"]?.intValue.map(UInt64.init) else {
                violations.append("malformed gap \(message)")
                return
            }
            if from != nextSeq { violations.append("gap from \(from) where \(nextSeq) was due") }
            if to < from { violations.append("gap \(from)...\(to) is empty") }
            if message["reason"] != .string("evicted") { violations.append("gap reason \(String(describing: message["reason"]))") }
            gaps.append((from, to))
            nextSeq = to + 1
        case "end":
            end = message
            if let last = message["last_seq"]?.intValue.map(UInt64.init), last != nextSeq - 1 {
                violations.append("end.last_seq \(last) but the stream covered up to \(nextSeq - 1)")
            }
        case "hello":
            violations.append("a second hello")
        default:
            violations.append("unknown message \(message)")
        }
    }

    /// Checks and records one text message. Without `keepRecords`, `logs` messages are not parsed in
    /// full: their records' seqs are read straight from the bytes (`{"seq":N,` opens every record, and a
    /// message's own text can never hold that unescaped), which keeps the stress test fast.
    mutating func observe(text: String) throws {
        guard !keepRecords, text.hasPrefix("{\"type\":\"logs\",\"records\":[") else {
            observe(try JSONParser.parse(text))
            return
        }
        if end != nil { violations.append("logs after end") }
        logsMessages += 1
        var text = text
        var found = 0
        var problems: [String] = []
        var next = nextSeq
        text.withUTF8 { bytes in
            let pattern: [UInt8] = Array("{\"seq\":".utf8)
            var index = 0
            let count = bytes.count
            while index + pattern.count < count {
                if bytes[index] == UInt8(ascii: "{") && bytes[index + 1] == UInt8(ascii: "\"") && bytes[index + 2] == UInt8(ascii: "s")
                    && bytes[index + 3] == UInt8(ascii: "e") && bytes[index + 4] == UInt8(ascii: "q") && bytes[index + 5] == UInt8(ascii: "\"")
                    && bytes[index + 6] == UInt8(ascii: ":") {
                    index += pattern.count
                    var seq: UInt64 = 0
                    while index < count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                        seq = seq * 10 + UInt64(bytes[index] - 0x30)
                        index += 1
                    }
                    if seq != next && problems.count < 5 { problems.append("record \(seq) where \(next) was due") }
                    next = seq + 1
                    found += 1
                } else {
                    index += 1
                }
            }
        }
        if found == 0 { problems.append("logs without records") }
        if !text.hasSuffix("}]}") { problems.append("logs message not closed: …\(text.suffix(40))") }
        violations.append(contentsOf: problems)
        nextSeq = next
        recordCount += found
    }

    /// Notes the server's close frame.
    mutating func observeClose(_ code: UInt16?) {
        closeCode = code
    }

    /// Reads a NIO client's stream until the connection ends (answering the close handshake).
    mutating func readToEnd(_ client: WebSocketTestClient, timeout: Duration = .seconds(10)) async throws {
        while let event = try await client.nextEvent(timeout: timeout) {
            switch event {
            case .text(let text): try observe(text: text)
            case .close(let code, _): observeClose(code)
            case .ping, .pong: break
            case .binary: violations.append("binary frame")
            }
        }
    }

    /// Reads messages until the stream has covered `seq` (or ended).
    mutating func read(_ client: WebSocketTestClient, through seq: UInt64, timeout: Duration = .seconds(10)) async throws {
        while lastCovered < seq && end == nil {
            guard let event = try await client.nextEvent(timeout: timeout) else { return }
            switch event {
            case .text(let text): try observe(text: text)
            case .close(let code, _): observeClose(code); return
            case .ping, .pong: break
            case .binary: violations.append("binary frame")
            }
        }
    }

    /// Observes one raw frame; returns false when the frame closes the stream.
    mutating func observe(frame: ServerFrame) throws -> Bool {
        if frame.isText {
            try observe(text: frame.text)
            return true
        }
        if frame.isClose {
            observeClose(frame.closeCode)
            return false
        }
        return true
    }
}

/// The `hello` read from a raw stream.
func readHello(_ client: RawTCPClient) async throws -> JSONValue {
    guard let frame = try await client.readFrame(), frame.isText else { throw ConnectionEnded(waitingFor: "hello") }
    return try JSONParser.parse(frame.text)
}

extension JSONValue {
    /// The value as an unsigned seq, when it is a whole number.
    var seq: UInt64? { intValue.flatMap { $0 >= 0 ? UInt64($0) : nil } }
}

/// Publishes `count` records numbered in their message (`record 1`, …) into `worker`.
func publish(_ count: Int, to worker: Worker, prefix: String = "record") {
    for index in 1...count {
        worker.publish(.info, "\(prefix) \(index)", loggerName: "test", module: "tests", funcName: "publish", lineNo: index)
    }
}

/// Waits until `worker`'s ring holds seq `seq` (publishing is asynchronous: a drain runs on its loop).
func waitForRing(_ worker: Worker, lastSeq seq: UInt64) async throws {
    try await waitUntil("worker \(worker.id) to reach seq \(seq)") { worker.snapshot().lastSeq >= seq }
}
