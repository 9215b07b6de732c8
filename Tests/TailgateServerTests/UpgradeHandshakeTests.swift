import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import TailgateCore
@testable import TailgateServer

/// The head of a stream request read straight from the bytes (`StreamRequestHead`): what it reads, and
/// what it leaves to NIO's HTTP parser.
@Suite("Stream request heads read without the HTTP handlers")
struct UpgradeRequestHeadTests {
    static let reader = StreamRequestHead(basePath: "/tg", maxHeadBytes: 1024)

    /// `text` read as the gateway reads it — in reads of 1 to 7 bytes through `parse(_:after:)` — after
    /// checking that this gives what one read of the whole gives.
    static func parse(_ text: String) -> StreamRequestHead.Parsed {
        let fed = feed(Array(text.utf8), to: reader)
        let whole = reader.parse(ByteBuffer(string: text))
        #expect(agree(fed, whole), "read in pieces: \(fed); whole: \(whole), for \(text.debugDescription)")
        return fed
    }

    /// `bytes` given to `reader` in reads of 1 to 7 bytes (a fixed sequence), as the handler gives them,
    /// until the answer is no longer `.incomplete`.
    static func feed(_ bytes: [UInt8], to reader: StreamRequestHead) -> StreamRequestHead.Parsed {
        var buffer = ByteBuffer()
        var offset = 0
        var step = 0
        var result = StreamRequestHead.Parsed.incomplete
        while offset < bytes.count {
            let count = min(bytes.count - offset, 1 + (step * 5 + 3) % 7)
            step += 1
            let before = buffer.readableBytes
            buffer.writeBytes(bytes[offset..<(offset + count)])
            offset += count
            result = reader.parse(buffer, after: before)
            if case .incomplete = result { continue }
            return result
        }
        return result
    }

    static func agree(_ left: StreamRequestHead.Parsed, _ right: StreamRequestHead.Parsed) -> Bool {
        switch (left, right) {
        case (.incomplete, .incomplete), (.other, .other): return true
        case (.head(let a, let lengthA), .head(let b, let lengthB)):
            return lengthA == lengthB && a.uri == b.uri && a.headers.map { [$0.name, $0.value] } == b.headers.map { [$0.name, $0.value] }
        default: return false
        }
    }

    @Test("a head that goes wrong before its empty line is handed on at once, not left waiting for the rest")
    func brokenHeadsAreHandedOnEarly() {
        let start = "GET /ws/workers/demo-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        let fields = String(repeating: "X-F: v\r\n", count: StreamRequestHead.maxFields + 2)
        let many = StreamRequestHead(basePath: "", maxHeadBytes: 16 << 10)
        for (what, text, reader) in [
            ("NUL in a value", start + "X-A: a\u{0}b\r\n", Self.reader),
            ("folded line", start + "X-A: a\r\n folded\r\n", Self.reader),
            ("space before the colon", start + "X-A : a\r\n", Self.reader),
            ("CR not followed by LF", start + "\rX", Self.reader),
            ("more fields than NIO takes", start + fields, many),
        ] {
            guard case .other = Self.feed(Array(text.utf8), to: reader) else {
                Issue.record("\(what): still waiting for the rest of the head")
                continue
            }
        }
    }

    @Test("a stream request is read whole: target, fields in order, length up to the empty line")
    func reads() throws {
        let request = upgradeRequest("/ws/workers/w1?tail=0", extraHeaders: "X-Empty:\r\nX-Tab:\tv\t1\r\n")
        guard case .head(let head, let length) = Self.parse(request + "\u{81}") else {
            Issue.record("not read")
            return
        }
        #expect(length == request.utf8.count)
        #expect(head.method == .GET && head.version == .http1_1 && head.uri == "/ws/workers/w1?tail=0")
        #expect(head.headers.map(\.name) == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-Empty", "X-Tab"])
        #expect(head.headers["x-tab"] == ["v\t1"] && head.headers["x-empty"] == [""])
        guard case .head(let based, _) = Self.parse(upgradeRequest("/tg/ws/workers/w1")) else {
            Issue.record("the base path's stream target not read")
            return
        }
        #expect(based.uri == "/tg/ws/workers/w1")
    }

    @Test("every prefix of a stream request is incomplete, never another answer")
    func prefixes() {
        let bytes = Array(upgradeRequest("/ws/workers/w1").utf8)
        for count in 0..<bytes.count {
            guard case .incomplete = Self.reader.parse(ByteBuffer(bytes: bytes[..<count])),
                  case .incomplete = Self.feed(Array(bytes[..<count]), to: Self.reader) else {
                Issue.record("prefix of \(count) bytes not incomplete")
                return
            }
        }
    }

    static let others: [(String, String)] = [
        ("another method", "POST /ws/workers/w1 HTTP/1.1\r\n\r\n"),
        ("lowercase method", "get /ws/workers/w1 HTTP/1.1\r\n\r\n"),
        ("another path", "GET /api/workers/w1 HTTP/1.1\r\n\r\n"),
        ("multiplex socket", upgradeRequest("/ws/streams")),
        ("the prefix alone", upgradeRequest("/ws/workers/")),
        ("another base path", upgradeRequest("/other/ws/workers/w1")),
        ("absolute form", upgradeRequest("http://127.0.0.1/ws/workers/w1")),
        ("HTTP/1.0", "GET /ws/workers/w1 HTTP/1.0\r\n\r\n"),
        ("two spaces", "GET /ws/workers/w1  HTTP/1.1\r\n\r\n"),
        ("quote in target", "GET /ws/workers/w\"1 HTTP/1.1\r\n\r\n"),
        ("byte above ASCII in target", "GET /ws/workers/wé HTTP/1.1\r\n\r\n"),
        ("bare LF after the request line", "GET /ws/workers/w1 HTTP/1.1\nHost: a\r\n\r\n"),
        ("field without colon", "GET /ws/workers/w1 HTTP/1.1\r\nHost a\r\n\r\n"),
        ("space before colon", "GET /ws/workers/w1 HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("empty name", "GET /ws/workers/w1 HTTP/1.1\r\n: a\r\n\r\n"),
        ("folded line", "GET /ws/workers/w1 HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"),
        ("bare LF after a field", "GET /ws/workers/w1 HTTP/1.1\r\nHost: a\n\r\n"),
        ("CR without LF", "GET /ws/workers/w1 HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
        ("control byte in value", "GET /ws/workers/w1 HTTP/1.1\r\nHost: a\u{1}b\r\n\r\n"),
        ("byte above ASCII in value", "GET /ws/workers/w1 HTTP/1.1\r\nX: é\r\n\r\n"),
        ("space after value", "GET /ws/workers/w1 HTTP/1.1\r\nX: a \r\n\r\n"),
        ("content-length", "GET /ws/workers/w1 HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n"),
        ("transfer-encoding", "GET /ws/workers/w1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("empty line not CRLF", "GET /ws/workers/w1 HTTP/1.1\r\nHost: a\r\n\rX"),
    ]

    @Test("anything but a plain stream request is left to the HTTP handlers", arguments: others)
    func other(_ name: String, _ text: String) {
        guard case .other = Self.parse(text) else {
            Issue.record("\(name): not left to the HTTP handlers")
            return
        }
    }

    @Test("a head larger than the limit, or with too many fields, is left to the HTTP handlers (which refuse it)")
    func limits() {
        let long = upgradeRequest("/ws/workers/w1", extraHeaders: "X-Pad: \(String(repeating: "p", count: 1024))\r\n")
        guard case .other = Self.parse(long) else {
            Issue.record("an oversized head was read")
            return
        }
        // Without its end, too: the bytes stop being a possible head at the limit.
        guard case .other = Self.parse(String(long.prefix(1100))) else {
            Issue.record("an unfinished oversized head was waited for")
            return
        }
        let longTarget = "GET /ws/workers/" + String(repeating: "a", count: 1100)
        guard case .other = Self.parse(longTarget) else {
            Issue.record("an oversized target was waited for")
            return
        }
        let many = StreamRequestHead(basePath: "", maxHeadBytes: 1 << 20)
        let fields = String(repeating: "X: y\r\n", count: StreamRequestHead.maxFields)
        guard case .other = Self.feed(Array(upgradeRequest("/ws/workers/w1", extraHeaders: fields).utf8), to: many) else {
            Issue.record("a head with too many fields was read")
            return
        }
        // Exactly at the limit: read.
        let exact = upgradeRequest("/ws/workers/w1")
        let fits = StreamRequestHead(basePath: "", maxHeadBytes: exact.utf8.count)
        guard case .head = Self.feed(Array(exact.utf8), to: fits) else {
            Issue.record("a head exactly at the limit was not read")
            return
        }
    }

    @Test("Sec-WebSocket-Accept is RFC 6455's, and the 101 head is NIO's, byte for byte")
    func accept() {
        let extensions: HTTPHeaders = ["Sec-WebSocket-Extensions": "permessage-deflate"]
        let head = StreamUpgrade.switchingProtocols(key: "dGhlIHNhbXBsZSBub25jZQ==", extraHeaders: extensions, allocator: ByteBufferAllocator())
        #expect(String(buffer: head) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\n"
            + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    }
}

/// `StreamHandshakeHandler` on an `EmbeddedChannel`: the stream answered without the HTTP handlers,
/// and everything else handed to them with the bytes and the decision.
@Suite("Stream handshakes on EmbeddedChannel")
struct UpgradeHandshakeHandlerTests {
    /// The `101` head and the frames after it.
    static func upgraded(_ channel: EmbeddedChannel) throws -> (head: String, frames: [WrittenFrame]) {
        var written = try channel.written()
        let text = String(buffer: written)
        guard let end = text.range(of: "\r\n\r\n") else { return ("", []) }
        let head = String(text[..<end.upperBound])
        written.moveReaderIndex(forwardBy: head.utf8.count)
        return (head, WrittenFrame.readAll(from: &written))
    }

    static func handlerNames(_ channel: EmbeddedChannel) -> [String] {
        var names: [String] = []
        if (try? channel.pipeline.syncOperations.context(handlerType: StreamHandshakeHandler.self)) != nil { names.append("handshake") }
        if (try? channel.pipeline.syncOperations.context(handlerType: HTTPRequestHandler.self)) != nil { names.append("http") }
        if (try? channel.pipeline.syncOperations.context(handlerType: StreamSession.self)) != nil { names.append("session") }
        return names
    }

    @Test("an accepted stream: 101 and hello, with no HTTP handler ever added")
    func accepted() throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.register(WorkerID("w1")!)
        worker.publish(.info, "one")
        gateway.pump()
        let channel = try gateway.connection()
        #expect(Self.handlerNames(channel) == ["handshake"])
        try channel.send(upgradeRequest("/ws/workers/w1?tail=5"))
        let (head, frames) = try Self.upgraded(channel)
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"))
        #expect(frames.first?.text.contains("\"type\":\"hello\"") == true)
        #expect(frames.contains { $0.text.contains("\"one\"") })
        #expect(Self.handlerNames(channel) == ["session"])
        #expect(gateway.context.statistics.streamsOpened.load(ordering: .relaxed) == 1)
        #expect(Self.openedDirectly(gateway) == 1, "answered by the handshake handler, not the HTTP handlers")
        _ = try? channel.finish()
    }

    /// Streams whose handshake the handshake handler answered itself (the HTTP path gives the same bytes).
    static func openedDirectly(_ gateway: EmbeddedGateway) -> Int {
        gateway.context.statistics.streamsOpenedDirectly.load(ordering: .relaxed)
    }

    @Test("a request arriving a byte at a time is answered when its head is whole")
    func splitReads() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let channel = try gateway.connection()
        let bytes = Array(upgradeRequest("/ws/workers/w1").utf8)
        for byte in bytes.dropLast() {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            #expect(try channel.written().readableBytes == 0)
        }
        try channel.writeInbound(ByteBuffer(bytes: [bytes.last!]))
        let (head, frames) = try Self.upgraded(channel)
        #expect(head.hasPrefix("HTTP/1.1 101 "))
        #expect(frames.first?.text.contains("\"type\":\"hello\"") == true)
        #expect(Self.openedDirectly(gateway) == 1)
        _ = try? channel.finish()
    }

    @Test("a frame in the same read as the request reaches the stream: a ping is answered after the hello")
    func pipelinedFrame() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let channel = try gateway.connection()
        var bytes = ByteBuffer(string: upgradeRequest("/ws/workers/w1?tail=0"))
        var ping = clientFrame(opcode: 0x9, payload: Array("are you there".utf8))
        bytes.writeBuffer(&ping)
        try channel.writeInbound(bytes)
        let (head, frames) = try Self.upgraded(channel)
        #expect(head.hasPrefix("HTTP/1.1 101 "))
        #expect(frames.map(\.opcode) == [0x1, 0xA])
        #expect(frames.last?.text == "are you there")
        #expect(Self.openedDirectly(gateway) == 1)
        _ = try? channel.finish()
    }

    @Test("a frame split between the request's read and the next one reaches the stream")
    func splitFrame() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let channel = try gateway.connection()
        var ping = clientFrame(opcode: 0x9, payload: Array("split".utf8))
        var first = ByteBuffer(string: upgradeRequest("/ws/workers/w1?tail=0"))
        var start = ping.readSlice(length: 3)!
        first.writeBuffer(&start)
        try channel.writeInbound(first)
        try channel.writeInbound(ping)
        let (_, frames) = try Self.upgraded(channel)
        #expect(frames.map(\.opcode) == [0x1, 0xA])
        #expect(frames.last?.text == "split")
        #expect(Self.openedDirectly(gateway) == 1)
        _ = try? channel.finish()
    }

    struct Refused: Sendable, CustomTestStringConvertible {
        var name: String
        var request: String
        var status: Int
        var code: String
        /// Refusals of a request with `Upgrade` end the connection; others keep it alive.
        var closes = true
        var testDescription: String { name }
    }

    static let refusals: [Refused] = [
        Refused(name: "unknown worker (decided by the handshake handler)", request: upgradeRequest("/ws/workers/nobody"), status: 404, code: "worker_not_found"),
        Refused(name: "bad parameter", request: upgradeRequest("/ws/workers/w1?tail=x"), status: 400, code: "bad_parameter"),
        Refused(name: "no upgrade", request: "GET /ws/workers/w1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", status: 426, code: "websocket_upgrade_required", closes: false),
        Refused(name: "foreign origin", request: upgradeRequest("/ws/workers/w1", extraHeaders: "Origin: http://evil.example\r\n"),
                status: 403, code: "origin_not_allowed"),
        Refused(name: "foreign host", request: "GET /ws/workers/w1 HTTP/1.1\r\nHost: evil.example\r\n\r\n", status: 403, code: "host_not_allowed", closes: false),
        Refused(name: "two keys (checked where NIO's upgrader checks them)",
                request: upgradeRequest("/ws/workers/w1", extraHeaders: "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
                status: 400, code: "bad_websocket_handshake"),
        Refused(name: "malformed field (read by NIO's parser)", request: "GET /ws/workers/w1 HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
                status: 400, code: "bad_request"),
        Refused(name: "oversized head (read by NIO's parser)",
                request: upgradeRequest("/ws/workers/w1", extraHeaders: "X-Pad: \(String(repeating: "p", count: 17 * 1024))\r\n"),
                status: 431, code: "headers_too_large"),
    ]

    @Test("a refused stream request gets the HTTP handlers' answer, counted once", arguments: refusals)
    func refused(_ refusal: Refused) throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let channel = try gateway.connection()
        try channel.send(refusal.request)
        gateway.pump()
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == refusal.status, "\(response.body)")
        #expect(response.errorCode == refusal.code, "\(response.body)")
        #expect(response.header("connection") == (refusal.closes ? "close" : "keep-alive"))
        #expect(gateway.context.statistics.refusals.load(ordering: .relaxed) == 1)
        #expect(channel.isActive == !refusal.closes)
        if refusal.closes { #expect(gateway.context.limiter.openConnections == 0) }
        #expect(gateway.context.statistics.streamsOpened.load(ordering: .relaxed) == 0)
        _ = try? channel.finish()
    }

    @Test("a stream refused at the per-worker limit leaves no place reserved")
    func workerLimit() throws {
        let gateway = try EmbeddedGateway(configure: { $0.maxSubscribersPerWorker = 1 })
        _ = try gateway.bus.register(WorkerID("w1")!)
        let first = try gateway.connection()
        try first.send(upgradeRequest("/ws/workers/w1"))
        #expect(try Self.upgraded(first).head.hasPrefix("HTTP/1.1 101 "))
        let second = try gateway.connection()
        try second.send(upgradeRequest("/ws/workers/w1"))
        gateway.pump()
        var written = try second.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 503 && response.header("retry-after") != nil, "\(response.body)")
        _ = try? first.close().wait()
        gateway.pump()
        let third = try gateway.connection()
        try third.send(upgradeRequest("/ws/workers/w1"))
        #expect(try Self.upgraded(third).head.hasPrefix("HTTP/1.1 101 "), "the first stream's place was given back")
        _ = try? third.finish()
    }

    @Test("other requests are served by the HTTP handlers, on a kept-alive connection")
    func fallback() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        gateway.pump()
        var written = try channel.written()
        #expect(WrittenResponse.read(from: &written)?.status == 200)
        #expect(WrittenResponse.read(from: &written)?.status == 200)
        #expect(Self.handlerNames(channel) == ["http"])
        #expect(channel.isActive)
        // A stream request on the kept-alive connection goes the HTTP handlers' way, and is served.
        _ = try gateway.bus.register(WorkerID("w1")!)
        try channel.send(upgradeRequest("/ws/workers/w1"))
        gateway.pump()
        let (head, frames) = try Self.upgraded(channel)
        #expect(head.hasPrefix("HTTP/1.1 101 "))
        #expect(frames.first?.text.contains("\"type\":\"hello\"") == true)
        _ = try? channel.finish()
    }

    @Test("a stream request the handshake handler does not read is upgraded by the HTTP handlers, with the same 101 head")
    func sameAnswer() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let lean = try gateway.connection()
        try lean.send(upgradeRequest("/ws/workers/w1", extraHeaders: "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        let leanHead = try Self.upgraded(lean).head
        let http = try gateway.connection()
        // A space after a value: left to NIO's parser.
        try http.send(upgradeRequest("/ws/workers/w1", extraHeaders: "Sec-WebSocket-Extensions: permessage-deflate \r\n"))
        gateway.pump()
        let httpHead = try Self.upgraded(http).head
        #expect(leanHead.contains("Sec-WebSocket-Extensions: permessage-deflate"))
        #expect(leanHead == httpHead)
        _ = try? lean.finish()
        _ = try? http.finish()
    }

    @Test("the head's deadline runs from the connection's start, across the hand-over to the HTTP handlers")
    func deadline() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /ws/wor")
        gateway.pump(.seconds(6))
        #expect(channel.isActive)
        #expect(Self.handlerNames(channel) == ["handshake"])
        // Now the target is not a stream's: the HTTP handlers wait for the rest of the first 10 s, not a new 10 s.
        try channel.send("ld/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        #expect(Self.handlerNames(channel) == ["http"])
        gateway.pump(.seconds(3))
        #expect(channel.isActive)
        gateway.pump(.seconds(2))
        #expect(!channel.isActive)
    }

    @Test("a head trickled in is read once it can be whole; a bare-LF end is handed to NIO at once")
    func trickled() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        let channel = try gateway.connection()
        let request = upgradeRequest("/ws/workers/w1", extraHeaders: String(repeating: "X-Pad: \(String(repeating: "p", count: 60))\r\n", count: 100))
        for byte in request.utf8.dropLast() { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(Self.handlerNames(channel) == ["handshake"])
        try channel.writeInbound(ByteBuffer(bytes: [request.utf8.last!]))
        #expect(try Self.upgraded(channel).head.hasPrefix("HTTP/1.1 101 "))
        #expect(Self.openedDirectly(gateway) == 1)
        _ = try? channel.finish()
        let bare = try gateway.connection()
        try bare.send("GET /ws/workers/w1 HTTP/1.1\nHost: 127.0.0.1\n\n")
        gateway.pump()
        #expect(!Self.handlerNames(bare).contains("handshake"))
        var written = try bare.written()
        #expect(WrittenResponse.read(from: &written) != nil, "NIO's handlers answered it")
        _ = try? bare.finish()
    }

    @Test("a stream head that goes wrong before its empty line is answered 400 at once by the HTTP handlers")
    func brokenHeadAnsweredAtOnce() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        for broken in ["X-A: a\u{0}b\r\n", "X-A: a\r\n folded\r\n", "X-A : a\r\n"] {
            let channel = try gateway.connection()
            try channel.send("GET /ws/workers/w1 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + broken)
            gateway.pump()
            var written = try channel.written()
            let response = WrittenResponse.read(from: &written)
            #expect(response?.status == 400, "\(broken.debugDescription): \(String(describing: response))")
            _ = try? channel.finish()
        }
        #expect(Self.openedDirectly(gateway) == 0)
    }

    @Test("a stream request that never ends its head is closed after handshakeTimeout")
    func silent() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /ws/workers/w1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        gateway.pump(.seconds(9))
        #expect(channel.isActive)
        gateway.pump(.seconds(2))
        #expect(!channel.isActive)
        #expect(try channel.written().readableBytes == 0)
    }
}

/// The allocation-free lookups of the handshake give the answers of the expressions they replace.
@Suite("Handshake lookups on bytes")
struct UpgradeLookupTests {
    static let upgradeValues: [String] = [
        "websocket", "WebSocket", " websocket ", "h2c, websocket", "websocket,h2c", ",,websocket,,", "\twebsocket\t",
        "websockets", "web socket", "", " ", ",", "h2c", "WEBSOC\u{212A}ET", "websocket, é", "é, websocket", "wébsocket",
    ]

    @Test("Upgrade lists websocket exactly when canonicalForm and lowercased() say so", arguments: upgradeValues)
    func lists(_ value: String) {
        let headers = HTTPHeaders([("Host", "a"), ("UPGRADE", value)])
        #expect(headers.lists("websocket", in: "upgrade") == headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" })
        #expect(!HTTPHeaders([("X-Upgrade", value)]).lists("websocket", in: "upgrade"))
    }

    @Test("a second Upgrade field is looked at too")
    func secondField() {
        let headers = HTTPHeaders([("Upgrade", "h2c"), ("upgrade", "websocket")])
        #expect(headers.lists("websocket", in: "upgrade"))
        #expect(headers.count(of: "upgrade") == 2)
    }

    static let targetCases: [String] = [
        "/ws/workers/w1", "/ws/workers/w1?tail=0", "/ws/workers/w1?since=5&tail=3&&x", "/a?b=c=d&e", "/p?%41=%42+c",
        "/ws/workers/w1?", "/?&=&", "/x?a=%zz", "/ws/workers/w1/runs/abc", "/ws/workers/é?q=é", "/ws/workers/w1?q=%C3%A9",
    ]

    @Test("targets split on bytes as on characters", arguments: targetCases)
    func splitTarget(_ uri: String) throws {
        let fast = try? RequestTarget(uri)
        // The character-based split, as RequestTarget did it for every target.
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var expected: [(String, String)]? = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") where !pair.isEmpty {
                let nameAndValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = RequestTarget.percentDecode(nameAndValue[0], plusIsSpace: true),
                      let value = RequestTarget.percentDecode(nameAndValue.count > 1 ? nameAndValue[1] : "", plusIsSpace: true)
                else { expected = nil; break }
                expected?.append((name, value))
            }
        }
        #expect((fast == nil) == (expected == nil))
        if let fast, let expected {
            #expect(fast.path == parts[0])
            #expect(fast.query.map(\.name) == expected.map(\.0) && fast.query.map(\.value) == expected.map(\.1))
        }
    }

    @Test("dotted quads are ASCII digits only; names of other Unicode numbers are names (no crash)",
          arguments: [("127.0.0.1", true), ("255.255.255.255", true), ("0.0.0.0", true), ("256.1.1.1", false), ("1.1.1", false),
                      ("1.1.1.1.1", false), ("1..1.1", false), ("0001.1.1.1", false), ("a.1.1.1", false), ("½.1.1.1", false),
                      ("١.١.١.١", false), ("1.1.1.1.", false), ("", false)])
    func dottedQuad(_ name: String, _ isQuad: Bool) {
        #expect(HostPolicy.isDottedQuad(name) == isQuad)
        #expect(HostPolicy.isAddressLiteral(name) == isQuad)
    }

    @Test("a Host of Unicode numbers is refused with 403, not a crash of the gateway")
    func unicodeHost() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("w1")!)
        for request in ["GET /healthz HTTP/1.1\r\nHost: ½.1.1.1\r\n\r\n", "GET /ws/workers/w1 HTTP/1.1\r\nHost: ½.1.1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"] {
            let channel = try gateway.connection()
            try channel.send(request)
            gateway.pump()
            var written = try channel.written()
            let response = try #require(WrittenResponse.read(from: &written))
            #expect(response.status == 403 && response.errorCode == "host_not_allowed", "\(response.body)")
            _ = try? channel.finish()
        }
    }

    @Test("host names: lowercased, without port or final dot, brackets kept", arguments: [
        ("LocalHost:8080", "localhost"), ("example.org.", "example.org"), ("[::1]:80", "[::1]"), ("[::1", "[::1"), ("::1", "::1"),
        ("a:b:c", "a:b:c"), ("Ünïcode.example:1", "ünïcode.example"), ("", ""),
    ])
    func hostName(_ host: String, _ name: String) {
        #expect(HostPolicy.name(of: host) == name)
    }
}

/// Every head `StreamRequestHead` reads, NIO's HTTP parser reads the same way: thousands of mutations
/// of a stream request (bytes replaced, inserted, deleted), each read by both.
@Suite("Stream request heads against NIO's parser")
struct UpgradeParserAgreementTests {
    /// A fixed-seed generator, so that a failure can be replayed.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let interesting: [UInt8] = Array(" \t\r\n:\",;/?%=&#@!~^`|\\{}[]<>()'+*.-_aAzZ09".utf8) + [0x00, 0x01, 0x0B, 0x7F, 0x80, 0xC3, 0xA9, 0xFF]

    /// NIO's reading of `bytes`: the head, or `nil` when it reports an error or no head.
    static func nioHead(_ bytes: [UInt8]) -> HTTPRequestHead? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        guard (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil else { return nil }
        guard case .head(let head)? = try? channel.readInbound(as: HTTPServerRequestPart.self) else { return nil }
        return head
    }

    @Test("a mutated request read as a head by StreamRequestHead is the same head for NIO")
    func agreement() {
        let reader = StreamRequestHead(basePath: "/tg", maxHeadBytes: 4096)
        let base = Array(upgradeRequest("/ws/workers/w1?tail=5&since=2", extraHeaders: "Origin: http://127.0.0.1:8080\r\nX-Empty:\r\n").utf8)
        var generator = SplitMix64(state: 20_261_130)
        var readHeads = 0
        for _ in 0..<4000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0..<bytes.count, using: &generator)
                let byte = interestingByte(using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                default: if bytes.count > 1 { bytes.remove(at: position) }
                }
            }
            let whole = reader.parse(ByteBuffer(bytes: bytes))
            #expect(UpgradeRequestHeadTests.agree(UpgradeRequestHeadTests.feed(bytes, to: reader), whole),
                    "read in pieces differs: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
            guard case .head(let head, let length) = whole else { continue }
            readHeads += 1
            guard let nio = Self.nioHead(Array(bytes[..<length])) else {
                Issue.record("read here, refused by NIO: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
                continue
            }
            #expect(nio.method == head.method && nio.uri == head.uri && nio.version == head.version,
                    "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(nio.headers.map { "\($0.name): \($0.value)" } == head.headers.map { "\($0.name): \($0.value)" },
                    "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
        }
        #expect(readHeads > 500, "too few mutations still read as heads (\(readHeads)) to say anything")
    }

    func interestingByte(using generator: inout SplitMix64) -> UInt8 {
        Self.interesting[Int.random(in: 0..<Self.interesting.count, using: &generator)]
    }
}
