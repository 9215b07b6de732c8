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

    @Test("numbered lines: every line takes an offset (blank, bad and long ones too); lines at or below the publisher's offset are duplicates")
    func numberedLines() throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.remoteWorker(WorkerID("job")!)
        let first = IngestSession(worker: worker, format: .ndjson, maxLineBytes: 40, publisher: ("p1", 1))
        var body = ByteBuffer(string: "{\"message\":\"1\"}\n\n{\"message\":\"3\"}\nnope\n" + String(repeating: "x", count: 50) + "\n{\"message\":\"6\"}")
        #expect(first.consume(&body, queueLimit: 1000))
        first.finish()
        #expect(first.accepted == 3 && first.rejected == 2 && first.duplicates == 0)
        #expect(worker.publisherOffset("p1") == 6)
        // The publisher resends from offset 5: 5 and 6 are duplicates, 7 is new.
        let second = IngestSession(worker: worker, format: .ndjson, maxLineBytes: 40, publisher: ("p1", 5))
        var again = ByteBuffer(string: "nope\n{\"message\":\"6\"}\n{\"message\":\"7\"}\n")
        #expect(second.consume(&again, queueLimit: 1000))
        second.finish()
        #expect(second.accepted == 1 && second.duplicates == 2 && second.rejected == 0)
        #expect(worker.publisherOffset("p1") == 7)
        #expect(messages(gateway, second) == ["1", "3", "6", "7"])
        let summary = try JSONParser.parse(String(buffer: second.summary()))
        #expect(summary["offset"]?.intValue == 7 && summary["publisher"]?.stringValue == "p1" && summary["duplicates"]?.intValue == 2)
        #expect(summary["epoch"]?.stringValue == worker.epoch)
        // Without an offset a body goes on after the publisher's; another publisher has its own offsets.
        let third = IngestSession(worker: worker, format: .text, maxLineBytes: 40, publisher: ("p1", nil))
        var text = ByteBuffer(string: "eight\n")
        #expect(third.consume(&text, queueLimit: 1000))
        #expect(worker.publisherOffset("p1") == 8 && third.accepted == 1)
        let other = IngestSession(worker: worker, format: .text, maxLineBytes: 40, publisher: ("p2", 1))
        var line = ByteBuffer(string: "x\n")
        #expect(other.consume(&line, queueLimit: 1000))
        #expect(worker.publisherOffset("p2") == 1 && other.duplicates == 0)
    }

    @Test("duplicates are caught under the worker's lock too: two bodies of one publisher racing over the same lines")
    func concurrentDuplicates() throws {
        let gateway = try EmbeddedGateway()
        let worker = try gateway.bus.remoteWorker(WorkerID("job")!)
        let one = IngestSession(worker: worker, format: .text, maxLineBytes: 40, publisher: ("p", 1))
        let two = IngestSession(worker: worker, format: .text, maxLineBytes: 40, publisher: ("p", 1))
        var a = ByteBuffer(string: "a\nb\nc\n")
        var b = ByteBuffer(string: "a\nb\nc\nd\n")
        #expect(one.consume(&a, queueLimit: 1000))
        #expect(two.consume(&b, queueLimit: 1000))
        #expect(one.accepted == 3 && two.accepted == 1 && two.duplicates == 3)
        #expect(messages(gateway, two) == ["a", "b", "c", "d"])
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
