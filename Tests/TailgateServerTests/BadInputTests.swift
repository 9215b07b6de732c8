import NIOCore
import Testing
import TailgateCore
import TailgateServer

/// A request the HTTP parser must reject.
struct MalformedRequest: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var testDescription: String { name }

    init(_ name: String, _ text: String) {
        self.name = name
        bytes = Array(text.utf8)
    }
}

extension GatewayIntegrationTests {
    @Suite("Bad input from clients")
    struct BadInput {
        static let malformed: [MalformedRequest] = [
            MalformedRequest("not a method", "GARBAGE\r\n\r\n"),
            MalformedRequest("control bytes", "\u{01}\u{02}\u{03} / HTTP/1.1\r\n\r\n"),
            MalformedRequest("bad version", "GET /healthz HTTP/x.y\r\nHost: a\r\n\r\n"),
            MalformedRequest("junk after the version", "GET /healthz HTTP/1.1 junk\r\nHost: a\r\n\r\n"),
            MalformedRequest("header without a colon", "GET /healthz HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n"),
            MalformedRequest("space in the header name", "GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        ]

        @Test("a malformed request gets 400 with a JSON body, and the server keeps serving", arguments: malformed)
        func malformedRequest(_ request: MalformedRequest) async throws {
            try await withGateway { gateway in
                let client = try await gateway.rawConnection()
                try await client.send(request.bytes)
                let response = try await client.readHTTPResponse()
                #expect(response.status == 400, "\(response.text)")
                #expect(response.errorCode == "bad_request", "\(response.text)")
                #expect(response.header("content-type")?.hasPrefix("application/json") == true)
                // The connection is closed after the answer.
                _ = try await client.readUntilClosed()
                try await gateway.expectStillServing()
            }
        }

        @Test("a request head over maxHeaderBytes gets 431, and the server keeps serving", arguments: [false, true])
        func oversizedHeaders(manySmallHeaders: Bool) async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w")
                var request = "GET /ws/workers/w HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                for (name, value) in HTTPTestClient.upgradeHeaders() { request += "\(name): \(value)\r\n" }
                if manySmallHeaders {
                    for index in 0..<200 { request += "X-Filler-\(index): \(String(repeating: "v", count: 100))\r\n" }
                } else {
                    request += "X-Big: \(String(repeating: "a", count: 20 * 1024))\r\n"
                }
                request += "\r\n"
                #expect(request.utf8.count > gateway.server.configuration.maxHeaderBytes)
                let client = try await gateway.rawConnection()
                try await client.send(request)
                let response = try await client.readHTTPResponse()
                #expect(response.status == 431, "\(response.text)")
                #expect(response.errorCode == "headers_too_large", "\(response.text)")
                await client.close()
                try await gateway.expectStillServing()
            }
        }

        @Test("an inbound WebSocket message over 4 KiB closes the stream with 1009")
        func inboundTooBig() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w")
                // At the limit: accepted and ignored; the stream stays open (a ping still gets its pong).
                let fine = try await gateway.subscribe("/ws/workers/w")
                _ = try await fine.nextMessage()
                try await fine.send(text: String(repeating: "x", count: 4096))
                try await fine.send(.ping, ByteBuffer(string: "still there"))
                var answered = false
                while !answered, let event = try await fine.nextEvent() {
                    if case .pong = event { answered = true }
                    if case .close = event { Issue.record("a 4096-byte message closed the stream: \(event)"); break }
                }
                #expect(answered)

                // One frame over the limit.
                let client = try await gateway.subscribe("/ws/workers/w")
                _ = try await client.nextMessage()
                try await client.send(text: String(repeating: "x", count: 5000))
                #expect(try await client.closeCode() == .some(1009))
                #expect(gateway.statistics.tooBigCloses.load(ordering: .relaxed) >= 1)
                await client.closeAbruptly()

                // A message of small fragments that adds up to more than the limit.
                let fragmented = try await gateway.rawStream("/ws/workers/w")
                _ = try await readHello(fragmented)
                let piece = [UInt8](repeating: UInt8(ascii: "y"), count: 2000)
                try await fragmented.send(ClientFrames.frame(opcode: 0x1, payload: piece, fin: false))
                try await fragmented.send(ClientFrames.frame(opcode: 0x0, payload: piece, fin: false))
                try await fragmented.send(ClientFrames.frame(opcode: 0x0, payload: piece, fin: true))
                var code: UInt16?
                while code == nil, let frame = try await fragmented.readFrame() {
                    if frame.isClose { code = frame.closeCode }
                }
                #expect(code == 1009)
                await fragmented.close()
                try await gateway.expectStillServing()
            }
        }

        @Test("an unmasked client frame closes the stream with 1002")
        func unmaskedFrame() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w")
                let client = try await gateway.rawStream("/ws/workers/w")
                let hello = try await readHello(client)
                #expect(hello["type"] == .string("hello"))
                try await client.send(ClientFrames.frame(opcode: 0x1, payload: Array("hi".utf8), masked: false))
                var close: ServerFrame?
                while close == nil, let frame = try await client.readFrame() {
                    if frame.isClose { close = frame }
                }
                #expect(close?.closeCode == 1002)
                #expect(close?.masked == false)
                await client.close()
                try await gateway.expectStillServing()
            }
        }

        @Test("a masked ping over a raw socket is answered by an unmasked pong with the same payload")
        func rawPing() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w")
                let client = try await gateway.rawStream("/ws/workers/w?tail=0")
                _ = try await readHello(client)
                try await client.send(ClientFrames.frame(opcode: 0x9, payload: Array("payload-123".utf8)))
                var pong: ServerFrame?
                while pong == nil, let frame = try await client.readFrame() {
                    if frame.isPong { pong = frame }
                }
                #expect(pong?.text == "payload-123")
                #expect(pong?.masked == false)
                #expect(pong?.fin == true)
                await client.close()
            }
        }

        @Test("a client that never completes its request head is closed after handshakeTimeout", arguments: [false, true])
        func handshakeTimeout(sendsPartialHead: Bool) async throws {
            try await withGateway(configure: { $0.handshakeTimeout = .milliseconds(300) }) { gateway in
                _ = try gateway.register("w")
                let clock = ContinuousClock()
                let started = clock.now
                let client = try await gateway.rawConnection()
                if sendsPartialHead {
                    try await client.send("GET /ws/workers/w HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nSec-WebSocket-")
                }
                let leftover = try await client.readUntilClosed(timeout: .seconds(5))
                let elapsed = clock.now - started
                #expect(elapsed >= .milliseconds(250), "closed after \(elapsed)")
                #expect(elapsed < .seconds(5), "closed after \(elapsed)")
                #expect(leftover.readableBytes == 0 || String(buffer: leftover).hasPrefix("HTTP/1.1 4"))
                try await gateway.expectStillServing()
            }
        }
    }
}
