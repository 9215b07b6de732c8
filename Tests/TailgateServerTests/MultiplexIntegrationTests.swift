import Foundation
import Logging
import NIOCore
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
                var ids: [String] = []
                var transcript: StreamTranscript?
                for event in body.split(separator: "\n\n") {
                    let lines = event.split(separator: "\n").map(String.init)
                    #expect(lines.count == 2 && lines[0].hasPrefix("id: ") && lines[1].hasPrefix("data: "), "\(lines)")
                    ids.append(String(lines[0].dropFirst(4)))
                    let message = try JSONParser.parse(String(lines[1].dropFirst(6)))
                    if transcript == nil { transcript = StreamTranscript(hello: message) } else { transcript!.observe(message) }
                }
                let stream = try #require(transcript)
                #expect(stream.violations.isEmpty, "\(stream.violations)")
                #expect(stream.replayFrom == 28, "Last-Event-ID 27 wins over tail=5")
                #expect(stream.end != nil && stream.lastCovered == 30)
                #expect(ids.first == "27" && ids.last == "30")
            }
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

private extension Array where Element == String {
    /// The two elements of a two-element array.
    func splitPair() -> (String, String)? { count == 2 ? (self[0], self[1]) : nil }
}
