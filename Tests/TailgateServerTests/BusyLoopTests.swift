import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Synchronization
import Testing
import TailgateCore
import TailgateServer

extension GatewayIntegrationTests {
    @Suite("A loop kept busy by many publishing workers")
    struct BusyLoop {
        /// Hundreds of workers, each published into every millisecond from another thread, keep drains
        /// due all the time. Drains run in sweeps with a pause between them, so the loop still polls its
        /// sockets: a new stream gets its `hello` promptly (one drain task per worker kept the loop
        /// running tasks and never reading new connections).
        @Test func newStreamsAreServedWhileManyWorkersPublishEveryMillisecond() async throws {
            try await withGateway { gateway in
                let workers = try (0..<300).map { try gateway.register("busy-\($0)") }
                let running = Atomic<Bool>(true)
                let published = Atomic<Int>(0)
                DispatchQueue(label: "busy-publisher").async {
                    var round = 0
                    while running.load(ordering: .relaxed) {
                        for worker in workers { worker.publish(.info, "round \(round)") }
                        published.add(workers.count, ordering: .relaxed)
                        round += 1
                        usleep(1000)
                    }
                }
                defer { running.store(false, ordering: .relaxed) }
                try await waitUntil("publishing to start") { published.load(ordering: .relaxed) > 30_000 }

                let clock = ContinuousClock()
                for index in 0..<10 {
                    let started = clock.now
                    let client = try await gateway.subscribe("/ws/workers/busy-\(index * 29)?tail=0", timeout: .seconds(5))
                    let hello = try await client.nextMessage(timeout: .seconds(5))
                    #expect(hello["type"] == .string("hello"))
                    #expect(clock.now - started < .seconds(5), "stream \(index) took \(clock.now - started) to open")
                    await client.closeAbruptly()
                }
                let health = try await gateway.get("/healthz")
                #expect(health.status == 200)
            }
        }
    }
}
