import NIOCore
import NIOEmbedded
import Testing
import TailgateCore
@testable import TailgateServer

/// Every state of a connection has a deadline (time driven by the embedded loop).
@Suite("Connection deadlines, on EmbeddedChannel")
struct DeadlineTests {
    @Test("no request head within handshakeTimeout: the connection is closed")
    func head() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  // never finished
        gateway.pump(.seconds(9))
        #expect(channel.isActive)
        gateway.pump(.seconds(2))
        #expect(!channel.isActive)
    }

    @Test("a head whose declared body never comes: 408 after requestBodyTimeout, and the connection is closed")
    func body() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nsome")
        gateway.pump(.seconds(29))
        #expect(channel.isActive)
        #expect(try channel.written().readableBytes == 0)
        gateway.pump(.seconds(2))
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 408 && response.errorCode == "request_timeout")
        #expect(!channel.isActive)
    }

    @Test("a kept-alive connection waits keepAliveTimeout for the next request, then closes")
    func keepAlive() throws {
        let gateway = try EmbeddedGateway()
        let channel = try gateway.connection()
        try channel.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try channel.written().readableBytes > 0)
        gateway.pump(.seconds(59))
        #expect(channel.isActive)
        gateway.pump(.seconds(2))
        #expect(!channel.isActive)
    }

    @Test("a published body may stay open as long as its publisher speaks; silent for publisherIdleTimeout, it gets 408 and what it sent is kept")
    func publisherIdle() throws {
        let gateway = try EmbeddedGateway(configure: { $0.publisherIdleTimeout = .seconds(600) })
        let channel = try gateway.connection()
        try channel.send("POST /api/workers/job/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        for minute in 1...30 {
            gateway.pump(.seconds(60))
            try channel.send("7\r\nline \(minute % 10)\n\r\n")
        }
        #expect(channel.isActive, "half an hour of a line a minute is not idle")
        gateway.pump(.seconds(599))
        #expect(channel.isActive)
        gateway.pump(.seconds(2))
        var written = try channel.written()
        let response = try #require(WrittenResponse.read(from: &written))
        #expect(response.status == 408 && response.errorCode == "publisher_idle")
        #expect(!channel.isActive)
        #expect(gateway.bus.worker(WorkerID("job")!)?.snapshot().lastSeq == 31, "every line it sent was published")
        #expect(gateway.context.statistics.idlePublisherCloses.load(ordering: .relaxed) == 1)
    }
}
