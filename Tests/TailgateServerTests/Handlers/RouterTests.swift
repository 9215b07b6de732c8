import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import TailgateCore
@testable import TailgateServer

@Suite("Router and HTTP handler, on EmbeddedChannel")
struct RouterTests {
    @Test("paths parse into routes", arguments: [
        ("/healthz", Route.health),
        ("/api/workers", .workerList),
        ("/api/workers/", .workerList),
        ("/api/stats", .statistics),
        ("/api/workers/demo-1", .worker(WorkerID("demo-1")!)),
        ("/api/workers/demo-1/logs", .workerLogs(WorkerID("demo-1")!)),
        ("/api/workers/demo-1/records", .workerRecords(WorkerID("demo-1")!)),
        ("/api/workers/demo-1/stop", .workerStop(WorkerID("demo-1")!)),
        ("/api/workers/demo-1/other", .unknownAPI),
        ("/api/other", .unknownAPI),
        ("/ws/workers/002050.SZ", .stream(WorkerID("002050.SZ")!)),
        ("/ws/workers/002050.SZ/runs/2guf0x", .runStream(WorkerID("002050.SZ")!, "2guf0x")),
        ("/api/workers/demo-1/runs", .workerRuns(WorkerID("demo-1")!)),
        ("/api/workers/demo-1/runs/abc123", .workerRun(WorkerID("demo-1")!, "abc123")),
        ("/api/workers/demo-1/runs/abc123/logs", .workerRunLogs(WorkerID("demo-1")!, "abc123")),
        ("/api/workers/demo-1/runs/abc123/other", .unknownAPI),
        ("/", .file("/")),
        ("/console.html", .file("/console.html")),
    ])
    func routes(path: String, route: Route) throws {
        #expect(try Route(path: path[...]) == route)
    }

    @Test("a malformed worker id is a 400 bad_worker_id", arguments: ["/ws/workers/", "/ws/workers/-x", "/api/workers/a b/logs", "/api/workers/%41"])
    func badWorkerID(path: String) {
        #expect(throws: GatewayError.self) { try Route(path: path[...]) }
        do { _ = try Route(path: path[...]) } catch { #expect(error.code == "bad_worker_id" && error.status == .badRequest) }
    }

    @Test("a malformed epoch is a 400 bad_epoch", arguments: ["/api/workers/w/runs/ABC", "/api/workers/w/runs/", "/ws/workers/w/runs/a-b",
                                                              "/api/workers/w/runs/\(String(repeating: "a", count: 33))/logs"])
    func badEpoch(path: String) {
        do {
            _ = try Route(path: path[...])
            Issue.record("\(path) was accepted")
        } catch {
            #expect(error.code == "bad_epoch" && error.status == .badRequest)
        }
    }

    @Test("requests get their endpoint's answer", arguments: [
        ("GET /healthz HTTP/1.1", 200, nil),
        ("HEAD /healthz HTTP/1.1", 200, nil),
        ("POST /healthz HTTP/1.1", 405, "method_not_allowed"),
        ("GET /api/workers HTTP/1.1", 200, nil),
        ("GET /api/workers/demo-1 HTTP/1.1", 200, nil),
        ("GET /api/workers/ghost HTTP/1.1", 404, "worker_not_found"),
        ("GET /api/workers/demo-1/logs?format=text HTTP/1.1", 200, nil),
        ("GET /api/workers/demo-1/logs?format=xml HTTP/1.1", 400, "bad_parameter"),
        ("GET /api/workers/demo-1/logs?since=x HTTP/1.1", 400, "bad_parameter"),
        ("GET /api/workers/demo-1/records HTTP/1.1", 405, "method_not_allowed"),
        ("GET /api/workers/demo-1/nothing HTTP/1.1", 404, "not_found"),
        ("GET /api/nothing HTTP/1.1", 404, "not_found"),
        ("GET /api/workers?x=%zz HTTP/1.1", 400, "bad_request"),
        ("GET /ws/workers/demo-1 HTTP/1.1", 426, "websocket_upgrade_required"),
        ("GET /ws/workers/bad!id HTTP/1.1", 400, "bad_worker_id"),
        ("GET /console.html HTTP/1.1", 404, "no_public_directory"),
        ("POST /api/workers/demo-1/stop HTTP/1.1", 409, "worker_owned_in_process"),
    ] as [(String, Int, String?)])
    func answers(requestLine: String, status: Int, code: String?) throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.register(WorkerID("demo-1")!)
        worker.publish(.info, "one")
        gateway.pump()
        let channel = try gateway.connection()
        try channel.send("\(requestLine)\r\nHost: 127.0.0.1:8080\r\nContent-Length: 0\r\n\r\n")
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == status)
        #expect(response.errorCode == code)
        #expect(written.readableBytes == 0, "one response, nothing more")
    }

    @Test("a keep-alive connection answers request after request; the base path is optional")
    func keepAlive() throws {
        let gateway = try EmbeddedGateway(configure: { $0.basePath = "/tailgate" })
        let channel = try gateway.connection()
        try channel.send("GET /tailgate/healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        var written = try channel.written()
        let first = try #require(WrittenResponse.read(from: &written))
        let second = try #require(WrittenResponse.read(from: &written))
        #expect(first.status == 200 && second.status == 200)
        #expect(first.header("Connection") == "keep-alive")
        #expect(channel.isActive)
    }

    @Test("an accepted stream request becomes a stream: 101, the HTTP handlers leave, hello follows")
    func upgrade() throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.register(WorkerID("demo-1")!)
        worker.publish(.info, "one")
        gateway.pump()
        let channel = try gateway.connection()
        try channel.send(upgradeRequest("/ws/workers/demo-1?tail=5"))
        gateway.pump()
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 101)
        // RFC 6455 §1.3's example key and answer.
        #expect(response.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let frames = WrittenFrame.readAll(from: &written)
        #expect(frames.first?.text.contains("\"type\":\"hello\"") == true)
        #expect(frames.dropFirst().first?.text.contains("\"message\":\"one\"") == true)
        #expect(throws: ChannelPipelineError.self) { try channel.pipeline.syncOperations.handler(type: HTTPRequestHandler.self) }
        #expect(throws: ChannelPipelineError.self) { try channel.pipeline.syncOperations.handler(type: HTTPResponseEncoder.self) }
        #expect(gateway.context.statistics.streamsOpened.load(ordering: .relaxed) == 1)
    }

    @Test("a frame sent right behind the upgrade request reaches the stream (the HTTP decoder passes it on)")
    func frameBehindTheRequest() throws {
        let gateway = try EmbeddedGateway()
        _ = try gateway.bus.register(WorkerID("demo-1")!)
        let channel = try gateway.connection()
        var bytes = ByteBuffer(string: upgradeRequest("/ws/workers/demo-1"))
        bytes.writeImmutableBuffer(clientFrame(opcode: 0x9, payload: Array("are you there".utf8)))
        try channel.writeInbound(bytes)
        gateway.pump()
        var written = try channel.written()
        #expect(WrittenResponse.read(from: &written)?.status == 101)
        let frames = WrittenFrame.readAll(from: &written)
        #expect(frames.contains(WrittenFrame(opcode: 0xA, payload: Array("are you there".utf8))), "the ping is answered with a pong")
    }

    @Test("a refused stream request is answered and the connection closed; its subscriber place is not kept")
    func refusedUpgrade() throws {
        let gateway = try EmbeddedGateway(configure: { $0.allowedOrigins = [] })
        _ = try gateway.bus.register(WorkerID("demo-1")!)
        let channel = try gateway.connection()
        try channel.send(upgradeRequest("/ws/workers/demo-1", extraHeaders: "Origin: http://evil.example\r\n"))
        gateway.pump()
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 403 && response.errorCode == "origin_not_allowed")
        #expect(response.header("Connection") == "close")
        #expect(!channel.isActive)
        #expect(gateway.context.limiter.openConnections == 0)
    }

    @Test("an ingest body is published line by line and answered with its summary")
    func ingest() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        let body = "{\"message\":\"a\"}\n{\"message\":\"b\",\"level\":\"ERROR\"}\nnot json\n"
        try channel.send("POST /api/workers/job-1/records HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/x-ndjson\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        gateway.pump()
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 200)
        #expect(response.body.hasPrefix("{\"accepted\":2,\"rejected\":1,\"duplicates\":0,\"first_seq\":1,\"last_seq\":2,"))
        #expect(gateway.bus.worker(WorkerID("job-1")!)?.snapshot().lastSeq == 2)
    }

    @Test("a refused ingest request is answered at once, before its body, and the connection closed")
    func refusedIngest() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection(from: "192.0.2.7")
        try channel.send("POST /api/workers/job-1/records HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nTransfer-Encoding: chunked\r\n\r\n")
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 403 && response.errorCode == "publish_not_allowed")
        #expect(!channel.isActive)
        #expect(gateway.bus.worker(WorkerID("job-1")!) == nil)
    }

    @Test("Host must be a name the gateway answers to (DNS rebinding)", arguments: [
        ("127.0.0.1:8080", 200), ("localhost:8080", 200), ("app.localhost", 200), ("[::1]:8080", 200), ("192.0.2.7", 200),
        ("logs.example", 200), ("LOGS.EXAMPLE.:443", 200), ("evil.example", 403), ("127.0.0.1.evil.example", 403),
    ] as [(String, Int)])
    func hosts(host: String, status: Int) throws {
        let gateway = try EmbeddedGateway(configure: { $0.allowedHosts = ["logs.example"] })
        let channel = try gateway.connection()
        try channel.send("GET /healthz HTTP/1.1\r\nHost: \(host)\r\n\r\n")
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == status)
        if status == 403 { #expect(response.errorCode == "host_not_allowed") }
    }

    @Test("a trusted proxy may relay any Host (its server_name chose it)")
    func hostsBehindProxy() throws {
        let gateway = try EmbeddedGateway(configure: { $0.trustedProxies = [AddressRange("127.0.0.2/32")!] })
        let channel = try gateway.connection(from: "127.0.0.2")
        try channel.send("GET /healthz HTTP/1.1\r\nHost: logs.example.com\r\n\r\n")
        var written = try channel.written()
        #expect(WrittenResponse.read(from: &written)?.status == 200)
    }

    @Test("a web page of another site may not publish or stop workers; programs and same-origin pages may", arguments: [
        ("Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n", 403, "cross_site_request"),
        ("Origin: http://evil.example\r\n", 403, "origin_not_allowed"),
        ("Sec-Fetch-Site: same-site\r\nOrigin: http://other.127.0.0.1.example\r\n", 403, "cross_site_request"),
        ("Origin: http://127.0.0.1:8080\r\nSec-Fetch-Site: same-origin\r\n", 200, nil),
        ("", 200, nil),
    ] as [(String, Int, String?)])
    func crossSite(headers: String, status: Int, code: String?) throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("POST /api/workers/job-1/records HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: text/plain\r\n\(headers)Content-Length: 5\r\n\r\nfake\n")
        gateway.pump()
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == status)
        #expect(response.errorCode == code)
    }

    @Test("an absolute-form target is served as its path")
    func absoluteForm() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET http://127.0.0.1:8080/healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET HTTPS://x/api/nothing?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        var written = try channel.written()
        #expect(WrittenResponse.read(from: &written)?.status == 200)
        #expect(WrittenResponse.read(from: &written)?.errorCode == "not_found")
        #expect(Request.originForm("http://host") == "/")
        #expect(Request.originForm("http://host?x=1") == "/?x=1")
        #expect(Request.originForm("/plain") == "/plain")
    }
}
