import NIOCore
import Synchronization
import Testing
import TailgateCore
import TailgateServer

extension GatewayIntegrationTests {
    @Suite("Stalled subscribers and graceful shutdown")
    struct StreamLifecycle {
        @Test("a subscriber that stops reading while records flow is closed after stallTimeout (1013); others carry on")
        func stallTimeout() async throws {
            try await withGateway(configure: { $0.stallTimeout = .seconds(1) }) { gateway in
                let worker = try gateway.register("busy")
                let healthy = try await gateway.subscribe("/ws/workers/busy?tail=0")
                var healthyTranscript = StreamTranscript(hello: try await healthy.nextMessage(), keepRecords: false)
                let stalled = try await gateway.rawStream("/ws/workers/busy?tail=0", receiveBufferSize: 4096)
                let hello = try await readHello(stalled)
                try await stalled.setAutoRead(false)

                // Keep records flowing (load, not synchronisation) until the server gives up on the
                // stalled reader. The healthy client's socket is read all along (its frames queue up in
                // the test client).
                let stop = StopFlag()
                let padding = String(repeating: "x", count: 300)
                let publisher = Task {
                    var published = 0
                    while !stop.isSet && published < 2_000_000 {
                        for _ in 0..<100 { worker.publish(.info, "flow \(published) \(padding)"); published += 1 }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    return published
                }
                let clock = ContinuousClock()
                let started = clock.now
                do {
                    try await waitUntil("the stalled subscriber to be closed", timeout: .seconds(15)) {
                        gateway.statistics.stalledCloses.load(ordering: .relaxed) >= 1
                    }
                } catch {
                    stop.set()
                    _ = await publisher.value
                    throw error
                }
                let elapsed = clock.now - started
                stop.set()
                let published = await publisher.value
                #expect(elapsed >= .seconds(1), "closed after \(elapsed), before the stall timeout")

                // The stalled reader, reading again, finds the bytes that were in flight and then the end
                // of the connection; a close frame, if it got through, says 1013.
                try await stalled.setAutoRead(true)
                var transcript = StreamTranscript(hello: hello, keepRecords: false)
                var closeCode: UInt16?
                while let frame = try await stalled.readFrame(timeout: .seconds(10)) {
                    if frame.isClose { closeCode = frame.closeCode; continue }
                    _ = try transcript.observe(frame: frame)
                }
                #expect(closeCode == nil || closeCode == 1013, "close code \(String(describing: closeCode))")
                #expect(transcript.violations.isEmpty, "\(transcript.violations.prefix(5))")
                #expect(transcript.lastCovered < UInt64(published), "the stalled reader cannot have had everything")

                // The healthy subscriber was never closed and gets every record, live ones included.
                worker.publish(.info, "after the stall")
                let lastSeq = UInt64(published + 1)
                try await waitForRing(worker, lastSeq: lastSeq)
                try await healthyTranscript.read(healthy, through: lastSeq)
                #expect(healthyTranscript.lastCovered == lastSeq)
                #expect(healthyTranscript.closeCode == nil)
                #expect(healthyTranscript.violations.isEmpty, "\(healthyTranscript.violations.prefix(5))")
                #expect(worker.fanOut.subscriberCount == 1)
            }
        }

        @Test("shutdown closes open streams with 1001 and stops accepting")
        func gracefulShutdown() async throws {
            try await withGateway(serverThreads: 2) { gateway in
                let worker = try gateway.register("w")
                publish(10, to: worker)
                var clients: [WebSocketTestClient] = []
                for _ in 0..<4 {
                    let client = try await gateway.subscribe("/ws/workers/w?tail=0")
                    #expect(try await client.nextMessage()["type"] == .string("hello"))
                    clients.append(client)
                }
                let raw = try await gateway.rawStream("/ws/workers/w?tail=0")
                _ = try await readHello(raw)

                let clock = ContinuousClock()
                let started = clock.now
                // The raw client answers the close frame like a browser would, concurrently.
                let rawClose = Task {
                    while let frame = try await raw.readFrame() {
                        if frame.isClose {
                            try await raw.send(ClientFrames.close(code: frame.closeCode ?? 1000))
                            return frame.closeCode
                        }
                    }
                    return nil
                }
                await gateway.server.shutdown(timeout: .seconds(10))
                let elapsed = clock.now - started
                for client in clients {
                    #expect(try await client.closeCode() == .some(1001))
                    try await client.waitUntilClosed()
                }
                #expect(try await rawClose.value == 1001)
                #expect(gateway.server.openConnections == 0)
                // Every client answered the close: shutdown returned once they were closed, not at its timeout.
                #expect(elapsed < .seconds(8), "shutdown took \(elapsed)")
                await #expect(throws: (any Error).self) {
                    _ = try await gateway.get("/healthz")
                }
            }
        }
    }
}

/// A flag one task sets and another reads.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
