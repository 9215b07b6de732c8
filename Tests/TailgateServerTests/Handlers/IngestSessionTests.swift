import NIOCore
import NIOEmbedded
import Testing
import TailgateCore
@testable import TailgateServer

@Suite("IngestSession: the line splitter of published bodies")
struct IngestSessionTests {
    private func session(_ format: IngestSession.Format = .ndjson, maxLineBytes: Int = 64) throws -> (EmbeddedGateway, IngestSession) {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.remoteWorker(WorkerID("job")!)
        return (gateway, IngestSession(worker: worker, format: format, maxLineBytes: maxLineBytes))
    }

    /// The messages the worker's ring holds, in seq order.
    private func messages(_ gateway: EmbeddedGateway, _ session: IngestSession) -> [String] {
        gateway.pump()
        var messages: [String] = []
        session.worker.withRing { ring, _ in
            ring.forEachRecord(from: ring.firstSeq) { _, bytes in
                let text = String(buffer: bytes)
                if let start = text.range(of: "\"message\":\"") {
                    messages.append(String(text[start.upperBound...].prefix { $0 != "\"" }))
                }
                return true
            }
        }
        return messages
    }

    @Test("lines split anywhere across reads are put back together; CRLF and blank NDJSON lines are fine")
    func splitAnywhere() throws {
        let (gateway, session) = try session()
        let body = "{\"message\":\"first\"}\r\n\n{\"message\":\"second\"}\n   \n{\"message\":\"third\"}\n"
        let bytes = Array(body.utf8)
        for chunk in stride(from: 0, to: bytes.count, by: 3).map({ bytes[$0..<min($0 + 3, bytes.count)] }) {
            var buffer = ByteBuffer(bytes: chunk)
            #expect(session.consume(&buffer, queueLimit: 1000))
        }
        session.finish()
        #expect(messages(gateway, session) == ["first", "second", "third"])
        #expect(session.accepted == 3 && session.rejected == 0)
    }

    @Test("plain text: every line is a record, blank ones too; a last line without a newline is published at the end")
    func text() throws {
        let (gateway, session) = try session(.text)
        var buffer = ByteBuffer(string: "alpha\n\nbeta\r\ngamma")
        #expect(session.consume(&buffer, queueLimit: 1000))
        #expect(messages(gateway, session) == ["alpha", "", "beta"])
        session.finish()
        #expect(messages(gateway, session) == ["alpha", "", "beta", "gamma"])
    }

    @Test("a line over the limit is rejected with its number, in one read or spread over several; its neighbours are published")
    func longLines() throws {
        let (gateway, session) = try session(.text, maxLineBytes: 10)
        var one = ByteBuffer(string: "ok-1\n" + String(repeating: "x", count: 11) + "\nok-2\n" + String(repeating: "y", count: 6))
        #expect(session.consume(&one, queueLimit: 1000))
        var two = ByteBuffer(string: String(repeating: "y", count: 6) + "\nok-3\n")
        #expect(session.consume(&two, queueLimit: 1000))
        session.finish()
        #expect(messages(gateway, session) == ["ok-1", "ok-2", "ok-3"])
        #expect(session.errors.map(\.line) == [2, 4])
        #expect(session.errors.allSatisfy { $0.message == "line exceeds the limit of 10 bytes" })
    }

    @Test("bad NDJSON lines are rejected one by one with their reason")
    func badLines() throws {
        let (gateway, session) = try session()
        var buffer = ByteBuffer(string: "{\"message\":\"a\"}\nnope\n{\"message\":5}\n{\"message\":\"b\"}\n")
        #expect(session.consume(&buffer, queueLimit: 1000))
        #expect(messages(gateway, session) == ["a", "b"])
        #expect(session.errors.map(\.line) == [2, 3])
        #expect(session.rejected == 2)
    }

    @Test("it stops taking input when the worker's queue is full, holds the rest, and resumes after a drain")
    func queueLimit() throws {
        let (gateway, session) = try session(.text)
        var buffer = ByteBuffer(string: (1...500).map { "line \($0)\n" }.joined())
        #expect(!session.consume(&buffer, queueLimit: 100), "the queue filled up: stop reading")
        #expect(session.isHoldingInput)
        let queued = session.worker.queuedCount
        #expect(queued >= 100 && queued < 500)
        let released = session.worker.whenQueueBelow(50, on: gateway.loop)
        gateway.pump()
        try released.wait()
        while session.isHoldingInput {
            _ = session.resume(queueLimit: 100)
            gateway.pump()
        }
        #expect(messages(gateway, session).count == 500)
        #expect(session.accepted == 500)
    }

    @Test("a worker's queue releases whoever waits for it at its next drain, not before")
    func whenQueueBelow() throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.register(WorkerID("w")!)
        let released = Released()
        worker.whenQueueBelow(1, on: gateway.loop).whenSuccess { released.count += 1 }
        #expect(released.count == 1, "an empty queue releases at once")
        for index in 0..<10 { worker.publish(.info, "\(index)") }
        worker.whenQueueBelow(5, on: gateway.loop).whenSuccess { released.count += 1 }
        #expect(released.count == 1)
        gateway.pump()
        #expect(released.count == 2)
    }
}

/// Counts callbacks; touched only on the embedded loop's thread (the test's).
private final class Released: @unchecked Sendable {
    var count = 0
}
