import Dispatch
import NIOCore
import Synchronization
import Testing
import TailgateCore
import TailgateServer

/// Publishes from `threads` threads at once, each `perThread` records spread round-robin over
/// `workers`; returns how many records each worker was given.
func publishFromThreads(_ workers: [Worker], threads: Int, perThread: Int) async -> [Int] {
    let padding = String(repeating: "·", count: 60) + " \"quoted\" \\ tab\t end"
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let group = DispatchGroup()
        for thread in 0..<threads {
            PublisherThread(name: "publisher-\(thread)") {
                for index in 0..<perThread {
                    let worker = workers[(index + thread) % workers.count]
                    worker.publish(.info, "thread \(thread) record \(index) \(padding)", loggerName: "stress",
                                   module: "FanOutStressTests", funcName: "publish", lineNo: index)
                }
            }.start(in: group)
        }
        group.notify(queue: .global()) { continuation.resume() }
    }
    var counts = Array(repeating: 0, count: workers.count)
    for thread in 0..<threads {
        for index in 0..<perThread { counts[(index + thread) % workers.count] += 1 }
    }
    return counts
}

/// A plain OS thread that runs `body` once, counted in a `DispatchGroup`.
private final class PublisherThread: Sendable {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    func start(in group: DispatchGroup) {
        group.enter()
        let queue = DispatchQueue(label: name)
        queue.async {
            self.body()
            group.leave()
        }
    }
}

/// What one subscriber saw: one transcript per connection it opened.
struct SubscriberReport: Sendable {
    var name: String
    var worker: Int
    var connections: [StreamTranscript]
}

extension GatewayIntegrationTests {
    @Suite("Fan-out invariant under stress")
    struct FanOutStress {
        @Test("every connection covers replay_from, replay_from+1, … exactly, whatever its reading speed; memory stays bounded")
        func invariantUnderStress() async throws {
            try await withGateway(serverThreads: 2) { gateway in
                let workers = try (0..<3).map { try gateway.register("stress-\($0)") }

                // Fast readers: NIO clients that read as fast as the loop gives them bytes.
                var fast: [(Int, WebSocketTestClient, StreamTranscript)] = []
                for worker in 0..<3 {
                    for _ in 0..<2 {
                        let client = try await gateway.subscribe("/ws/workers/stress-\(worker)?since=0")
                        let hello = try await client.nextMessage()
                        fast.append((worker, client, StreamTranscript(hello: hello, keepRecords: false)))
                    }
                }
                // A slow reader on worker 0: a small receive buffer, read a chunk at a time with pauses.
                let slow = try await gateway.rawStream("/ws/workers/stress-0?since=0", receiveBufferSize: 16 * 1024)
                let slowHello = try await readHello(slow)
                try await slow.setAutoRead(false)
                // A stalled reader on worker 1: stops reading altogether until the others are done.
                let stalled = try await gateway.rawStream("/ws/workers/stress-1?since=0", receiveBufferSize: 4096)
                let stalledHello = try await readHello(stalled)
                try await stalled.setAutoRead(false)
                let stalledBytesBefore = stalled.bytesReceived

                let clock = ContinuousClock()
                let started = clock.now
                let reports = try await withThrowingTaskGroup(of: SubscriberReport.self) { group in
                    for (index, (worker, client, transcript)) in fast.enumerated() {
                        group.addTask {
                            var transcript = transcript
                            try await transcript.readToEnd(client, timeout: .seconds(30))
                            return SubscriberReport(name: "fast-\(index)", worker: worker, connections: [transcript])
                        }
                    }
                    group.addTask {
                        var transcript = StreamTranscript(hello: slowHello, keepRecords: false)
                        var frames = 0
                        while let frame = try await slow.readFrame(timeout: .seconds(30)) {
                            guard try transcript.observe(frame: frame) else { break }
                            frames += 1
                            // Slowness, not synchronisation: a reader that pauses between reads.
                            if frames % 4 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                        }
                        await slow.close()
                        return SubscriberReport(name: "slow", worker: 0, connections: [transcript])
                    }
                    group.addTask {
                        try await Self.reconnectingSubscriber(gateway, worker: 2)
                    }

                    let counts = await publishFromThreads(workers, threads: 4, perThread: 20_000)
                    for worker in workers { worker.stop() }
                    #expect(counts.reduce(0, +) == 80_000)

                    var reports: [SubscriberReport] = []
                    for try await report in group { reports.append(report) }

                    // Everyone else has finished while the stalled reader has read nothing more: it
                    // held up no one.
                    #expect(stalled.bytesReceived == stalledBytesBefore)
                    #expect(workers[1].fanOut.subscriberCount == 1, "the stalled subscriber is still attached, behind")

                    try await stalled.setAutoRead(true)
                    var stalledTranscript = StreamTranscript(hello: stalledHello, keepRecords: false)
                    while let frame = try await stalled.readFrame(timeout: .seconds(30)) {
                        guard try stalledTranscript.observe(frame: frame) else { break }
                    }
                    await stalled.close()
                    #expect(!stalledTranscript.gaps.isEmpty, "the stalled reader fell behind the ring, so it must have been told of a gap")
                    reports.append(SubscriberReport(name: "stalled", worker: 1, connections: [stalledTranscript]))

                    for report in reports {
                        let lastSeq = UInt64(counts[report.worker])
                        for (index, connection) in report.connections.enumerated() {
                            #expect(connection.violations.isEmpty, "\(report.name) connection \(index): \(connection.violations.prefix(5))")
                        }
                        let final = try #require(report.connections.last)
                        #expect(final.end?["last_seq"]?.seq == lastSeq, "\(report.name) ends at \(final.lastCovered), not \(lastSeq)")
                        #expect(final.closeCode == 1000, "\(report.name)")
                    }
                    return reports
                }
                let elapsed = clock.now - started

                let reconnecting = try #require(reports.first { $0.name == "reconnecting" })
                #expect(reconnecting.connections.count >= 3)
                // Fast readers keep up with the publishers; everything they missed is announced as a gap.
                for report in reports where report.name.hasPrefix("fast") {
                    let transcript = report.connections[0]
                    let gapped = transcript.gaps.reduce(0) { $0 + Int($1.to - $1.from + 1) }
                    #expect(transcript.recordCount + gapped == Int(transcript.lastCovered))
                }

                let maxBuffered = gateway.statistics.maxBufferedBytesPerStream.load(ordering: .relaxed)
                #expect(maxBuffered > 0, "no stream was ever paused by back-pressure")
                #expect(maxBuffered < 1 << 20, "a stream buffered \(maxBuffered) bytes")
                let summary = reports.map { report in
                    "\(report.name): \(report.connections.count) conn, \(report.connections.map(\.recordCount).reduce(0, +)) records, "
                        + "\(report.connections.map(\.gaps.count).reduce(0, +)) gaps"
                }
                print("fan-out stress: \(elapsed), max buffered \(maxBuffered) bytes; " + summary.joined(separator: "; "))
            }
        }

        /// Connects with `since=<last seq seen>`, reads a few messages, drops the connection, and again,
        /// until the stream ends.
        static func reconnectingSubscriber(_ gateway: TestGateway, worker: Int) async throws -> SubscriberReport {
            var connections: [StreamTranscript] = []
            var lastSeen: UInt64 = 0
            for attempt in 0..<5_000 {
                let client = try await gateway.subscribe("/ws/workers/stress-\(worker)?since=\(lastSeen)", timeout: .seconds(30))
                var transcript = StreamTranscript(hello: try await client.nextMessage(timeout: .seconds(30)), keepRecords: false)
                #expect(transcript.replayFrom == lastSeen + 1, "connection \(attempt) resumed at \(transcript.replayFrom) after \(lastSeen)")
                let budget = attempt % 4 + 1
                var messages = 0
                while messages < budget, transcript.end == nil, transcript.closeCode == nil {
                    guard let event = try await client.nextEvent(timeout: .seconds(30)) else { break }
                    switch event {
                    case .text(let text):
                        try transcript.observe(text: text)
                        messages += 1
                    case .close(let code, _):
                        transcript.observeClose(code)
                    default:
                        break
                    }
                }
                if transcript.end != nil {
                    try await transcript.readToEnd(client, timeout: .seconds(30))
                } else {
                    await client.closeAbruptly()
                }
                lastSeen = transcript.lastCovered
                connections.append(transcript)
                if transcript.end != nil { break }
            }
            return SubscriberReport(name: "reconnecting", worker: worker, connections: connections)
        }
    }
}
