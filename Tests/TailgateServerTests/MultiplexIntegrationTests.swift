import Foundation
import Logging
import NIOCore
import Synchronization
import Testing
import TailgateCore
import TailgateServer
import TailgateStore

/// Every message of a many-worker stream, checked per worker against the invariant.
struct WorkerTranscripts {
    private(set) var transcripts: [String: StreamTranscript] = [:]
    private(set) var others: [JSONValue] = []
    private(set) var violations: [String] = []

    mutating func observe(_ message: JSONValue) {
        guard let worker = message["worker"]?.stringValue else {
            violations.append("message without worker: \(message)")
            return
        }
        switch message["type"]?.stringValue {
        case "hello":
            if transcripts[worker] != nil, transcripts[worker]?.end == nil { violations.append("second hello of \(worker) before its end") }
            transcripts[worker] = StreamTranscript(hello: message)
        case "logs", "gap", "end":
            guard transcripts[worker] != nil else {
                violations.append("\(message["type"]!) of \(worker) before its hello")
                return
            }
            transcripts[worker]!.observe(message)
        default:
            others.append(message)
        }
    }

    var allViolations: [String] { violations + transcripts.flatMap { worker, transcript in transcript.violations.map { "\(worker): \($0)" } } }
}

extension GatewayIntegrationTests {
    @Suite("Many workers on one socket (/ws/streams) and Server-Sent Events")
    struct Multiplex {
        @Test("three workers on one socket: each keeps the invariant and ends with end; the socket stays open")
        func threeWorkers() async throws {
            try await withGateway { gateway in
                let workers = try ["mux-a", "mux-b", "mux-c"].map { try gateway.register($0) }
                for worker in workers { publish(50, to: worker) }
                for worker in workers { try await waitForRing(worker, lastSeq: 50) }
                let client = try await gateway.subscribe("/ws/streams?workers=mux-a,mux-*&tail=10")
                for worker in workers { publish(500, to: worker, prefix: "more") }
                for worker in workers { worker.stop() }
                var transcripts = WorkerTranscripts()
                while transcripts.transcripts.values.filter({ $0.end != nil }).count < 3 {
                    transcripts.observe(try await client.nextMessage())
                }
                #expect(transcripts.allViolations.isEmpty, "\(transcripts.allViolations.prefix(5))")
                #expect(transcripts.others.isEmpty, "\(transcripts.others)")
                for name in ["mux-a", "mux-b", "mux-c"] {
                    let transcript = try #require(transcripts.transcripts[name])
                    #expect(transcript.replayFrom == 41)
                    #expect(transcript.lastCovered == 550)
                }
                // Still open: an unsubscribe of a worker that has ended answers nothing, a bad message closes with 1007.
                try await client.send(text: #"{"type":"subscribe","workers":["nope"]}"#)
                let error = try await client.nextMessage()
                #expect(error["type"] == .string("error") && error["code"] == .string("worker_not_found") && error["worker"] == .string("nope"))
                try await client.send(text: #"{"type":"subscribe","workers":["bad id"]}"#)
                #expect(try await client.closeCode() == 1007)
            }
        }

        @Test("the subscriptions of a socket are limited; each counts as a subscriber of its worker")
        func limits() async throws {
            try await withGateway(configure: { $0.maxStreamSubscriptions = 2; $0.maxSubscribersPerWorker = 1 }) { gateway in
                for name in ["lim-a", "lim-b", "lim-c"] { _ = try gateway.register(name) }
                let client = try await gateway.subscribe("/ws/streams?workers=lim-a,lim-b,lim-c&tail=0")
                var kinds: [String: String] = [:]
                for _ in 0..<3 {
                    let message = try await client.nextMessage()
                    kinds[message["worker"]!.stringValue!] = message["type"] == .string("error") ? message["code"]!.stringValue! : message["type"]!.stringValue!
                }
                #expect(kinds == ["lim-a": "hello", "lim-b": "hello", "lim-c": "too_many_subscriptions"])
                #expect(gateway.bus.worker(WorkerID("lim-a")!)!.snapshot().subscribers == 1)
                // lim-a's only subscriber place is taken by the socket.
                let second = try await gateway.subscribe("/ws/streams?workers=lim-a")
                let refused = try await second.nextMessage()
                #expect(refused["code"] == .string("too_many_subscribers"))
                try await client.send(text: #"{"type":"unsubscribe","workers":["lim-*"]}"#)
                var unsubscribed: Set<String> = []
                for _ in 0..<2 {
                    let message = try await client.nextMessage()
                    #expect(message["type"] == .string("unsubscribed"))
                    unsubscribed.insert(message["worker"]!.stringValue!)
                }
                #expect(unsubscribed == ["lim-a", "lim-b"])
                try await waitUntil("lim-a's subscriber place to be given back") {
                    gateway.bus.worker(WorkerID("lim-a")!)!.snapshot().subscribers == 0
                }
                try await second.send(text: #"{"type":"subscribe","workers":["lim-a"]}"#)
                #expect(try await second.nextMessage()["type"] == .string("hello"))
            }
        }

        @Test("sockets that close while their workers wait for store reads leave nothing behind; the gateway serves on")
        func closeWhileReadingTheStore() async throws {
            let path = NSTemporaryDirectory() + "tailgate-multiplex-\(UInt64.random(in: 0...UInt64.max))"
            defer { try? FileManager.default.removeItem(atPath: path) }
            let store = try FileRunStore(configuration: StoreConfiguration(directory: path, segmentBytes: 64 << 10),
                                         logger: Logger(label: "test-store"))
            try await withGateway(bus: BusConfiguration(workerLimits: WorkerLimits(ringRecords: 50)), store: store) { gateway in
                let workers = try (1...4).map { try gateway.register("deep-\($0)") }
                for worker in workers { publish(3000, to: worker) }
                for worker in workers { try await worker.whenStored(through: 3000, on: gateway.group.next()).get() }
                for round in 0..<20 {
                    let client = try await gateway.subscribe("/ws/streams?workers=deep-*&tail=3000")
                    // Some rounds leave after the first messages, some at once: store reads are in flight either way.
                    if round % 2 == 0 { _ = try await client.nextMessage() }
                    await client.closeAbruptly()
                }
                try await waitUntil("every subscriber place to be given back") {
                    workers.allSatisfy { $0.snapshot().subscribers == 0 }
                }
                // A last socket reads every worker whole, from the store.
                let client = try await gateway.subscribe("/ws/streams?workers=deep-*&tail=3000")
                var transcripts = WorkerTranscripts()
                while transcripts.transcripts.count < 4 || transcripts.transcripts.values.contains(where: { $0.lastCovered < 3000 }) {
                    transcripts.observe(try await client.nextMessage())
                }
                #expect(transcripts.allViolations.isEmpty, "\(transcripts.allViolations.prefix(5))")
                #expect(transcripts.transcripts.values.allSatisfy { $0.replayFrom == 1 && $0.gaps.isEmpty })
                try await gateway.expectStillServing()
            }
        }

        @Test("connections reset (RST) while live batches flow, and single-worker events whose live worker stops, leave nothing behind")
        func resetsDuringLiveBatches() async throws {
            try await withGateway(serverThreads: 2) { gateway in
                let workers = try (1...4).map { try gateway.register("rst-\($0)") }
                let publishing = RunningFlag()
                let publisher = Task.detached {
                    var round = 0
                    while publishing.isOn {
                        round += 1
                        for worker in workers { publish(10, to: worker, prefix: "live \(round) " + String(repeating: "x", count: 200)) }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
                for round in 0..<10 {
                    var clients: [RawTCPClient] = []
                    for index in 0..<3 {
                        clients.append(try await gateway.rawStream("/ws/streams?workers=rst-*&tail=0", receiveBufferSize: 4096, autoRead: index == 0))
                        let events = try await gateway.rawConnection(receiveBufferSize: 4096, autoRead: index == 0)
                        try await events.send("GET /api/streams/events?workers=rst-*&tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        clients.append(events)
                        let single = try await gateway.rawConnection(receiveBufferSize: 4096, autoRead: index == 0)
                        try await single.send("GET /api/workers/rst-\(index + 1)/events?tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        clients.append(single)
                    }
                    // A live worker whose single-worker event stream is at the head when it stops.
                    let ending = try gateway.register("rst-end-\(round)")
                    let endingEvents = try await gateway.rawConnection()
                    try await endingEvents.send("GET /api/workers/rst-end-\(round)/events?tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    _ = try await endingEvents.nextChunk()
                    // Whatever came first (the 101's rest, a head, a hello, live batches); a slow build may have none yet.
                    for client in clients { _ = try? await client.nextChunk(timeout: .milliseconds(500)) }
                    publish(30, to: ending)
                    try await Task.sleep(for: .milliseconds(round % 3 == 0 ? 1 : 20))
                    ending.stop()
                    for client in clients { await client.reset() }
                    let ended = String(buffer: try await endingEvents.readUntilClosed(timeout: .seconds(30)))
                    #expect(ended.contains("\"type\":\"end\""), "\(ended.suffix(200))")
                }
                publishing.turnOff()
                await publisher.value
                try await waitUntil("every subscriber place to be given back") {
                    workers.allSatisfy { $0.snapshot().subscribers == 0 }
                }
                try await gateway.expectStillServing()
            }
        }

        @Test("a pattern beyond the socket's limit is one error naming the pattern; a pattern already followed is not applied again; at most 100 patterns")
        func patternLimits() async throws {
            try await withGateway(configure: { $0.maxStreamSubscriptions = 2 }) { gateway in
                for index in 1...6 { _ = try gateway.register("pat-\(index)") }
                let client = try await gateway.subscribe("/ws/streams")
                try await client.send(text: #"{"type":"subscribe","workers":["pat-*"],"tail":0}"#)
                var messages: [JSONValue] = []
                for _ in 0..<3 { messages.append(try await client.nextMessage()) }
                #expect(messages.filter { $0["type"] == .string("hello") }.count == 2)
                #expect(messages.last?["type"] == .string("error") && messages.last?["code"] == .string("too_many_subscriptions")
                        && messages.last?["worker"] == .string("pat-*"), "\(messages)")
                // The same pattern again, many times: nothing; the next answer is the one to the probe.
                for _ in 0..<20 { try await client.send(text: #"{"type":"subscribe","workers":["pat-*","*"],"tail":0}"#) }
                try await client.send(text: #"{"type":"subscribe","workers":["nope"]}"#)
                let next = try await client.nextMessage()
                #expect(next["type"] == .string("error") && next["worker"] == .string("*") && next["code"] == .string("too_many_subscriptions"), "\(next)")
                let probe = try await client.nextMessage()
                #expect(probe["worker"] == .string("nope") && probe["code"] == .string("worker_not_found"), "\(probe)")
                // 98 more patterns are followed (100 in all); beyond them, one error per message naming the first pattern over.
                let patterns = (0..<98).map { "\"none-\($0)-*\"" } + ["\"over-1-*\"", "\"over-2-*\""]
                try await client.send(text: #"{"type":"subscribe","workers":["# + patterns.joined(separator: ",") + "]}")
                let over = try await client.nextMessage()
                #expect(over["type"] == .string("error") && over["code"] == .string("too_many_subscriptions") && over["worker"] == .string("over-1-*"), "\(over)")
                try await client.send(text: #"{"type":"unsubscribe","workers":["pat-1"]}"#)
                #expect(try await client.nextMessage()["worker"] == .string("pat-1"))
                try await client.send(text: #"{"type":"subscribe","workers":["nope"]}"#)
                #expect(try await client.nextMessage()["worker"] == .string("nope"))
                let refused = try await gateway.get("/api/streams/events?workers=" + (0...100).map { "q\($0)-*" }.joined(separator: ","))
                #expect(refused.status == 400)
            }
        }

        @Test("an ended event stream whose client stops reading is closed after a short wait, giving back its places")
        func endedEventsOfAClientThatDoesNotRead() async throws {
            try await withGateway(bus: BusConfiguration(workerLimits: WorkerLimits(ringRecords: 100_000, ringBytes: 64 << 20))) { gateway in
                let worker = try gateway.register("slow-end")
                let connection = try await gateway.rawConnection(receiveBufferSize: 4096, autoRead: false)
                try await connection.send("GET /api/workers/slow-end/events?tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                _ = try await connection.nextChunk()
                try await waitUntil("the subscriber place to be taken") { worker.snapshot().subscribers == 1 }
                // Live batches while the client reads nothing: the socket fills, then the worker ends.
                for round in 0..<40 {
                    publish(1000, to: worker, prefix: "fill \(round) " + String(repeating: "y", count: 400))
                    try await waitForRing(worker, lastSeq: UInt64(round + 1) * 1000)
                }
                worker.stop()
                // The client reads slowly until the response has ended on the gateway's side (its `end`
                // is written, behind bytes the socket does not take), then stops reading.
                // One read of at most 4 KiB at a time, slowly near the end, so that the client stops
                // while bytes are still waiting on the gateway's side.
                try await connection.channel.setOption(.maxMessagesPerRead, value: 1)
                var chunks = 0
                while worker.fanOut.subscriberCount > 0 {
                    guard try await connection.nextChunk() != nil else { break }
                    chunks += 1
                    if connection.bytesReceived > 19_000_000 { try await Task.sleep(for: .milliseconds(2)) }
                }
                #expect(chunks > 0)
                // Without reading: the connection is closed after its grace period, and the worker's place is given back.
                try await waitUntil("the subscriber place of the ended response to be given back") { worker.snapshot().subscribers == 0 }
                try await gateway.expectStillServing()
            }
        }

        @Test("a closing handshake whose answer the client does not read is ended by closing the connection after a short wait")
        func closeAnswerNotRead() async throws {
            try await withGateway(bus: BusConfiguration(workerLimits: WorkerLimits(ringRecords: 100_000, ringBytes: 64 << 20))) { gateway in
                let worker = try gateway.register("close-unread")
                let openBefore = try await Self.openConnections(gateway)
                let client = try await gateway.rawStream("/ws/streams?workers=close-unread&tail=0", receiveBufferSize: 4096, autoRead: false)
                try await waitUntil("the subscription") { worker.fanOut.subscriberCount == 1 }
                // More than the socket takes, while the client reads nothing: the answer to its close waits behind it.
                for round in 0..<40 {
                    publish(500, to: worker, prefix: "fill \(round) " + String(repeating: "z", count: 400))
                    try await waitForRing(worker, lastSeq: UInt64(round + 1) * 500)
                }
                try await Task.sleep(for: .milliseconds(200))
                try await client.send(ClientFrames.frame(opcode: 0x8, payload: [0x03, 0xE8]))
                try await waitUntil("the subscription to end") { worker.fanOut.subscriberCount == 0 }
                let deadline = ContinuousClock.now + .seconds(8)
                var open = try await Self.openConnections(gateway)
                while open > openBefore, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(250))
                    open = try await Self.openConnections(gateway)
                }
                #expect(open == openBefore, "the connection whose close answer was not read is still open")
                await client.close()
                try await gateway.expectStillServing()
            }
        }

        /// `connections_open` of `/api/stats` (counting the connection that asks).
        static func openConnections(_ gateway: TestGateway) async throws -> Int {
            try #require(try await gateway.get("/api/stats").json()["connections_open"]?.intValue)
        }

        @Test("one worker over Server-Sent Events: the head, id: lines, Last-Event-ID, and the end closes the response")
        func serverSentEvents() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("sse-1")
                publish(30, to: worker)
                try await waitForRing(worker, lastSeq: 30)
                worker.stop()
                let connection = try await gateway.rawConnection()
                try await connection.send("GET /api/workers/sse-1/events?tail=5 HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 27\r\n\r\n")
                let text = String(buffer: try await connection.readUntilClosed())
                let (head, body) = try #require(text.split(separator: "\r\n\r\n", maxSplits: 1).map(String.init).splitPair())
                let headLines = head.split(separator: "\r\n").map(String.init)
                #expect(headLines.first == "HTTP/1.1 200 OK")
                for header in ["Content-Type: text/event-stream", "Cache-Control: no-cache", "X-Accel-Buffering: no", "Connection: close"] {
                    #expect(headLines.contains(header), "\(headLines)")
                }
                #expect(!head.lowercased().contains("content-length") && !head.lowercased().contains("transfer-encoding"))
                let (stream, ids, hello) = try Self.singleWorkerEvents(body)
                #expect(stream.violations.isEmpty, "\(stream.violations)")
                #expect(stream.replayFrom == 28, "Last-Event-ID 27 (a plain seq) wins over tail=5")
                #expect(stream.end != nil && stream.lastCovered == 30)
                let epoch = try #require(hello["epoch"]?.stringValue)
                #expect(ids.first == "\(epoch):27" && ids.last == "\(epoch):30", "\(ids)")

                // EPOCH:SEQ of this run resumes after SEQ; of another run (the worker's id registered
                // anew, a gateway restart): the current run from its first record, "resumed":false.
                let same = try await gateway.rawConnection()
                try await same.send("GET /api/workers/sse-1/events?since=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: \(epoch):25\r\n\r\n")
                let resumed = try Self.singleWorkerEvents(String(buffer: try await same.readUntilClosed()))
                #expect(resumed.stream.replayFrom == 26 && resumed.hello["resumed"] == .bool(true))
                let other = try await gateway.rawConnection()
                try await other.send("GET /api/workers/sse-1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: oldrun1:25\r\n\r\n")
                let restarted = try Self.singleWorkerEvents(String(buffer: try await other.readUntilClosed()))
                #expect(restarted.stream.replayFrom == 1 && restarted.hello["resumed"] == .bool(false), "\(restarted.hello)")
                #expect(restarted.hello["reason"]?.stringValue?.contains("oldrun1") == true)
                #expect(restarted.stream.lastCovered == 30 && restarted.stream.violations.isEmpty)
                let bad = try await gateway.get("/api/workers/sse-1/events", headers: [("Last-Event-ID", "Old:25")])
                #expect(bad.status == 400)
            }
        }

        /// The events of a single-worker response's body (after its head): the transcript, the `id:`s, the `hello`.
        static func singleWorkerEvents(_ text: String) throws -> (stream: StreamTranscript, ids: [String], hello: JSONValue) {
            let body = text.split(separator: "\r\n\r\n", maxSplits: 1).map(String.init).last ?? ""
            var ids: [String] = []
            var transcript: StreamTranscript?
            var hello: JSONValue?
            for event in body.split(separator: "\n\n") {
                let lines = event.split(separator: "\n").map(String.init)
                #expect(lines.count == 2 && lines[0].hasPrefix("id: ") && lines[1].hasPrefix("data: "), "\(lines)")
                guard lines.count == 2 else { continue }
                ids.append(String(lines[0].dropFirst(4)))
                let message = try JSONParser.parse(String(lines[1].dropFirst(6)))
                if transcript == nil {
                    hello = message
                    transcript = StreamTranscript(hello: message)
                } else {
                    transcript!.observe(message)
                }
            }
            return (try #require(transcript), ids, try #require(hello))
        }

        @Test("many workers over Server-Sent Events name their worker and carry no id")
        func manyWorkerEvents() async throws {
            try await withGateway { gateway in
                let workers = try ["ev-a", "ev-b"].map { try gateway.register($0) }
                for worker in workers { publish(10, to: worker) }
                for worker in workers { try await waitForRing(worker, lastSeq: 10) }
                for worker in workers { worker.stop() }
                let connection = try await gateway.rawConnection()
                try await connection.send("GET /api/streams/events?workers=ev-*,nope&tail=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                var transcripts = WorkerTranscripts()
                var pending = ""
                var headSeen = false
                while transcripts.transcripts.values.filter({ $0.end != nil }).count < 2 || transcripts.others.isEmpty {
                    guard let chunk = try await connection.nextChunk() else { break }
                    pending += String(buffer: chunk)
                    if !headSeen {
                        guard let end = pending.firstRange(of: "\r\n\r\n") else { continue }
                        #expect(pending.hasPrefix("HTTP/1.1 200 OK\r\n"))
                        pending = String(pending[end.upperBound...])
                        headSeen = true
                    }
                    while let range = pending.firstRange(of: "\n\n") {
                        let event = String(pending[..<range.lowerBound])
                        pending = String(pending[range.upperBound...])
                        #expect(event.hasPrefix("data: ") && !event.contains("\nid:"), "\(event)")
                        transcripts.observe(try JSONParser.parse(String(event.dropFirst(6))))
                    }
                }
                #expect(transcripts.allViolations.isEmpty, "\(transcripts.allViolations)")
                #expect(transcripts.transcripts["ev-a"]?.lastCovered == 10 && transcripts.transcripts["ev-b"]?.replayFrom == 8)
                #expect(transcripts.others.first?["code"] == .string("worker_not_found"))
                await connection.close()
            }
        }
    }
}

/// A flag a test's background task reads.
private final class RunningFlag: Sendable {
    private let on = Atomic<Bool>(true)
    var isOn: Bool { on.load(ordering: .relaxed) }
    func turnOff() { on.store(false, ordering: .relaxed) }
}

private extension Array where Element == String {
    /// The two elements of a two-element array.
    func splitPair() -> (String, String)? { count == 2 ? (self[0], self[1]) : nil }
}
