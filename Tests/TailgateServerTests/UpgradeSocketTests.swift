import NIOCore
import Testing
import TailgateCore
import TailgateServer

extension GatewayIntegrationTests {
    /// Stream handshakes answered by `StreamHandshakeHandler`, over loopback sockets: requests in
    /// pieces, frames right behind the request, refusals and other requests handed to the HTTP handlers.
    @Suite("Stream handshakes over real sockets")
    struct UpgradeSockets {
        static let acceptOfSampleKey = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

        @Test("a request sent in several TCP segments is answered once its head is whole")
        func segments() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w1")
                worker.publish(.info, "first line")
                try await waitUntil("published") { worker.lastPublishedSeq == 1 }
                let client = try await gateway.rawConnection()
                let request = Array(upgradeRequest("/ws/workers/w1?tail=10").utf8)
                let cuts = [0, 3, 20, request.count - 3, request.count - 1, request.count]
                for (from, to) in zip(cuts, cuts.dropFirst()) {
                    try await client.send(Array(request[from..<to]))
                    // Separate segments: the gateway reads each on its own.
                    try await Task.sleep(for: .milliseconds(20))
                }
                let response = try await client.readHTTPResponse()
                #expect(response.status == 101)
                #expect(response.header("sec-websocket-accept") == Self.acceptOfSampleKey)
                #expect(response.header("upgrade") == "websocket" && response.header("connection") == "upgrade")
                let hello = try #require(try await client.readFrame())
                #expect(hello.text.contains("\"type\":\"hello\""))
                let logs = try #require(try await client.readFrame())
                #expect(logs.text.contains("first line"))
                await client.close()
            }
        }

        @Test("frames in the request's segment reach the stream: a ping is answered, a close ends it")
        func framesBehindRequest() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w1")
                let client = try await gateway.rawConnection()
                var bytes = Array(upgradeRequest("/ws/workers/w1?tail=0").utf8)
                bytes += ClientFrames.frame(opcode: 0x9, payload: Array("ping?".utf8))
                bytes += ClientFrames.frame(opcode: 0x8, payload: [0x03, 0xE8])
                try await client.send(bytes)
                #expect(try await client.readHTTPResponse().status == 101)
                let hello = try #require(try await client.readFrame())
                #expect(hello.text.contains("\"type\":\"hello\""))
                let pong = try #require(try await client.readFrame())
                #expect(pong.isPong && pong.text == "ping?")
                let close = try #require(try await client.readFrame())
                #expect(close.closeCode == 1000)
                #expect(try await client.readFrame() == nil, "the gateway closes after answering the close")
            }
        }

        @Test("malformed and oversized heads get the HTTP handlers' 400 and 431, and the connection closes")
        func malformed() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w1")
                let cases: [(String, Int, String)] = [
                    ("GET /ws/workers/w1 HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", 400, "bad_request"),
                    (upgradeRequest("/ws/workers/w1", extraHeaders: "X-Pad: \(String(repeating: "p", count: 20_000))\r\n"), 431, "headers_too_large"),
                    ("GET /ws/workers/w1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\u{1}\r\n\r\n", 400, "bad_request"),
                ]
                for (request, status, code) in cases {
                    let client = try await gateway.rawConnection()
                    try await client.send(request)
                    let response = try await client.readHTTPResponse()
                    #expect(response.status == status, "\(response.text)")
                    #expect(response.errorCode == code, "\(response.text)")
                    _ = try await client.readUntilClosed()
                }
                try await gateway.expectStillServing()
            }
        }

        @Test("requests other than a stream's are served as before, also right behind each other")
        func otherRequests() async throws {
            try await withGateway { gateway in
                let client = try await gateway.rawConnection()
                try await client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                #expect(try await client.readHTTPResponse().status == 200)
                #expect(try await client.readHTTPResponse().status == 200)
                let refused = try await gateway.get("/ws/streams")
                #expect(refused.status == 426)
                await client.close()
            }
        }

        @Test("a storm of streams: every one gets 101 and hello, the per-worker limit holds, and every place comes back")
        func storm() async throws {
            let streams = 120
            try await withGateway(configure: { $0.maxSubscribersPerWorker = streams }) { gateway in
                _ = try gateway.register("w1")
                let clients = try await withThrowingTaskGroup(of: RawTCPClient.self) { group in
                    for _ in 0..<streams {
                        group.addTask {
                            let client = try await gateway.rawStream("/ws/workers/w1?tail=0")
                            let hello = try #require(try await client.readFrame())
                            #expect(hello.text.contains("\"type\":\"hello\""))
                            return client
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(clients.count == streams)
                #expect(gateway.statistics.streamsOpen.load(ordering: .relaxed) == streams)
                do {
                    _ = try await gateway.rawStream("/ws/workers/w1")
                    Issue.record("a stream beyond the per-worker limit was opened")
                } catch let refused as WebSocketRefused {
                    #expect(refused.status.code == 503)
                }
                for client in clients { await client.close() }
                try await waitUntil("every connection closed") { gateway.server.openConnections == 0 }
                #expect(gateway.statistics.streamsOpen.load(ordering: .relaxed) == 0)
                let again = try await gateway.rawStream("/ws/workers/w1")
                #expect(try await again.readFrame()?.text.contains("\"type\":\"hello\"") == true)
                await again.close()
            }
        }
    }
}
