import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TailgateCore
import TailgateRedis
import Testing
@testable import TailgateRedisStore

/// One writer per run for the fleet: two gateways (a `RedisRunStore` and a `LogBus` each) on one real
/// `redis-server`, and the writer lease `tailgate:{W}:lease` between them.
@Suite(.enabled(if: RedisServerProcess.shouldRun, Comment(rawValue: RedisServerProcess.notFound)))
struct RedisWriterLeaseTests {
    /// A gateway: its store, its bus, its loop.
    final class Gateway: Sendable {
        let store: RedisRunStore
        let bus: LogBus
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

        init(_ server: RedisServerProcess, leaseTTL: TimeAmount = .seconds(10), maintenanceInterval: TimeAmount = .hours(1), label: String) throws {
            var redis = server.configuration
            redis.connectTimeout = .seconds(2)
            store = try RedisRunStore(configuration: RedisStoreConfiguration(redis: redis, maintenanceInterval: maintenanceInterval, closeTimeout: .seconds(2),
                                                                             leaseTTL: leaseTTL, instanceLabel: label),
                                      logger: quiet)
            bus = try LogBus(configuration: BusConfiguration(idleStop: nil), eventLoopGroup: group, store: store)
        }

        private let stopped = Mutex(false)

        /// A graceful stop: what is queued is written, the leases are released.
        func close() {
            guard stopped.withLock({ was in defer { was = true }; return !was }) else { return }
            store.close()
            try? group.syncShutdownGracefully()
        }

        /// A crash: nothing more is written and the leases are left to expire.
        func crash() {
            guard stopped.withLock({ was in defer { was = true }; return !was }) else { return }
            store.close(releasingWriters: false)
            try? group.syncShutdownGracefully()
        }
    }

    /// Runs `body` with two gateways, A and B, on a `redis-server` of its own; both closed after it (a
    /// gateway `crash()`ed in `body` is not closed again).
    static func withGateways(leaseTTL: TimeAmount = .seconds(10),
                             _ body: (_ server: RedisServerProcess, _ a: Gateway, _ b: Gateway) async throws -> Void) async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try Gateway(server, leaseTTL: leaseTTL, label: "gateway-a")
        defer { a.close() }
        let b = try Gateway(server, leaseTTL: leaseTTL, label: "gateway-b")
        defer { b.close() }
        try await body(server, a, b)
    }

    private let worker = WorkerID("fleet-job")!
    private let leaseKey = "tailgate:{fleet-job}:lease"

    /// Publishes records `seqs` (messages `record <seq> `) as publisher `pub-1` numbering its lines
    /// like the seqs, and waits until they are stored.
    private func publish(_ seqs: ClosedRange<UInt64>, into worker: Worker) async throws {
        var records = seqs.map { LogRecord(message: "record \($0) ") }
        let lines = Worker.NumberedLines(publisher: "pub-1", offsets: Array(seqs), lastOffset: seqs.upperBound)
        let enqueued = try #require(worker.enqueue(contentsOf: &records, lines: lines))
        #expect(enqueued.firstSeq == seqs.lowerBound && enqueued.published == seqs.count)
        try await worker.whenStored(through: seqs.upperBound, on: testLoop).get()
    }

    private func holder(_ server: RedisServerProcess) async throws -> String? {
        let client = RedisClient(configuration: server.configuration, eventLoop: testLoop, logger: quiet)
        defer { _ = client.close() }
        try await client.waitUntilConnected(within: .seconds(2)).get()
        return try await client.send(RedisCommand("GET", [.string(leaseKey)])).get().string
    }

    private func redis(_ server: RedisServerProcess, _ command: RedisCommand) async throws -> RESPValue {
        let client = RedisClient(configuration: server.configuration, eventLoop: testLoop, logger: quiet)
        defer { _ = client.close() }
        try await client.waitUntilConnected(within: .seconds(2)).get()
        return try await client.send(command).get()
    }

    @Test func aSecondGatewayCannotTakeAWorkerTheFirstHolds() async throws {
        try await Self.withGateways { server, a, b in
            let published = try a.bus.remoteWorker(worker)
            try await publish(1...5, into: published)
            #expect(try await holder(server) == a.store.instanceName)
            #expect(a.store.instanceName.hasSuffix(" gateway-a"))
            // A second publisher on the same gateway shares the worker and its lease.
            #expect(try a.bus.remoteWorker(worker) === published)

            do {
                _ = try b.bus.remoteWorker(worker)
                Issue.record("a second gateway took a worker the first holds")
            } catch {
                guard case .publishedElsewhere(let id, let holder, let seconds) = error as? BusError else { Issue.record("\(error)"); return }
                #expect(id == worker && holder == a.store.instanceName && (1...10).contains(seconds))
            }
            // An in-process worker of the id is refused the same way, and the refusal names the holder.
            do {
                _ = try b.bus.register(worker)
                Issue.record("registered a worker another gateway holds")
            } catch {
                #expect("\(error)".contains("gateway-a"), "\(error)")
            }
            #expect(b.bus.worker(worker) == nil)
            #expect(try await holder(server) == a.store.instanceName, "a refusal leaves the holder's lease alone")
        }
    }

    @Test func aStoppedWorkerReleasesItsLease() async throws {
        try await Self.withGateways { server, a, b in
            let first = try a.bus.register(worker)
            #expect(throws: BusError.self) { try b.bus.register(worker) }
            first.stop()
            try await first.whenStopped().get()
            try await waitForHolder(server, nil)
            let second = try b.bus.register(worker)
            #expect(second.epoch != first.epoch, "an in-process worker always starts a new run")
            #expect(try await holder(server) == b.store.instanceName)
        }
    }

    @Test func aGatewayStoppingReleasesItsLeasesAndAnotherContinuesTheRun() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try Gateway(server, label: "gateway-a")
        let first = try a.bus.remoteWorker(worker)
        try await publish(1...10, into: first)
        a.close()
        #expect(try await holder(server) == nil)

        let b = try Gateway(server, label: "gateway-b")
        defer { b.close() }
        let continued = try b.bus.remoteWorker(worker)
        #expect(continued.epoch == first.epoch, "the same run goes on")
        #expect(continued.lastPublishedSeq == 10)
        #expect(continued.publisherOffset("pub-1") == 10)
        try await publish(11...15, into: continued)
        #expect(try await readAll(b.store, continued.runID).seqs == Array(1...15))
    }

    @Test func anExpiredLeaseIsTakenOverAfterACrashAndSeqsContinue() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        // 2 s: long enough for the checks right after the crash on a loaded machine.
        let a = try Gateway(server, leaseTTL: .seconds(2), label: "gateway-a")
        let first = try a.bus.remoteWorker(worker)
        try await publish(1...10, into: first)
        let b = try Gateway(server, leaseTTL: .seconds(2), label: "gateway-b")
        defer { b.close() }
        #expect(throws: BusError.self) { try b.bus.remoteWorker(worker) }

        let crashed = ContinuousClock.now
        a.crash()
        let remaining = try await redis(server, RedisCommand("PTTL", [.string(leaseKey)])).int ?? -2
        // Renewed at most a third of the TTL before the crash, the lease lasts at least 1.33 s after it
        // (unless closing the crashed store took that long: a ThreadSanitizer build can be that slow).
        if ContinuousClock.now - crashed < .milliseconds(1200) {
            #expect(remaining > 0, "a crashed gateway's lease stays until it expires")
        }
        if remaining > 500 {
            #expect(throws: BusError.self) { try b.bus.remoteWorker(worker) }
        }
        try await waitForHolder(server, nil)
        #expect(ContinuousClock.now - crashed < .seconds(6))

        let continued = try b.bus.remoteWorker(worker)
        #expect(continued.epoch == first.epoch)
        #expect(continued.lastPublishedSeq == 10, "seqs continue from what Redis holds")
        #expect(continued.publisherOffset("pub-1") == 10, "publisher offsets come from Redis: exactly-once goes on")
        // The publisher sends its last lines again (it had no answer): they are duplicates, skipped.
        var again = (8...10).map { LogRecord(message: "record \($0) ") }
        let duplicate = try #require(continued.enqueue(contentsOf: &again, lines: Worker.NumberedLines(publisher: "pub-1", offsets: [8, 9, 10], lastOffset: 10)))
        #expect(duplicate.published == 0 && duplicate.duplicates == 3)
        try await publish(11...20, into: continued)
        #expect(try await readAll(b.store, continued.runID).seqs == Array(1...20), "no seq twice, none missing")
        #expect(try await holder(server) == b.store.instanceName)
    }

    @Test func renewalKeepsALeaseAlivePastItsTTL() async throws {
        try await Self.withGateways(leaseTTL: .seconds(1)) { server, a, b in
            let held = try a.bus.remoteWorker(worker)
            try await Task.sleep(for: .milliseconds(2500))
            #expect(try await holder(server) == a.store.instanceName)
            let ttl = try await redis(server, RedisCommand("PTTL", [.string(leaseKey)])).int ?? -2
            #expect(ttl > 0 && ttl <= 1000)
            #expect(throws: BusError.self) { try b.bus.remoteWorker(worker) }
            #expect(!held.isStopping)
        }
    }

    @Test(arguments: [true, false])
    func aLostLeaseStopsTheLocalWorkerAndItsWrites(takenByAnother: Bool) async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try Gateway(server, leaseTTL: .seconds(1), label: "gateway-a")
        defer { a.close() }
        let held = try a.bus.remoteWorker(worker)
        try await publish(1...5, into: held)
        // Another gateway took the lease (it found it expired), or it expired and nobody took it yet.
        if takenByAnother {
            _ = try await redis(server, RedisCommand("SET", [.string(leaseKey), "ffff gateway-z", "PX", "60000"]))
        } else {
            _ = try await redis(server, RedisCommand("DEL", [.string(leaseKey)]))
        }
        try await held.whenStopped().get()
        #expect(held.ending.status == .interrupted)
        #expect(held.stopReason.contains(takenByAnother ? "gateway ffff gateway-z took over" : "expired"), "\(held.stopReason)")
        // The store writes nothing more of the run: not the records, not its end.
        a.store.append(makeBatch(firstSeq: 6, count: 3), to: held.runID, publisherOffsets: [:])
        try await a.store.flush().get()
        let stream = "tailgate:{fleet-job}:run:\(held.epoch)"
        #expect(try await redis(server, RedisCommand("XRANGE", [.string(stream), "-", "+"])).array?.count == 1)
        let manifest = "tailgate:{fleet-job}:manifest:\(held.epoch)"
        #expect(try await redis(server, RedisCommand("HGET", [.string(manifest), "status"])).string == "running",
                "the run goes on elsewhere: its end is not written here")
        #expect(try await redis(server, RedisCommand("HGET", [.string(manifest), "last_seq"])).string == "5")
        // A gateway stopping does not delete another's lease.
        a.close()
        #expect(try await holder(server) == (takenByAnother ? "ffff gateway-z" : nil))
    }

    @Test func redisRefusesABatchOfARunAnotherGatewayWritesNow() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        // A long TTL: the renewal (every 20 s) does not find the lease taken first; the append does.
        let a = try Gateway(server, leaseTTL: .seconds(60), label: "gateway-a")
        defer { a.close() }
        let held = try a.bus.remoteWorker(worker)
        try await publish(1...5, into: held)
        _ = try await redis(server, RedisCommand("SET", [.string(leaseKey), "ffff gateway-z", "PX", "60000"]))
        var records = (6...8).map { LogRecord(message: "record \($0) ") }
        _ = held.enqueue(contentsOf: &records)
        try await held.whenStopped().get()
        #expect(held.ending.status == .interrupted)
        #expect(held.stopReason.contains("gateway ffff gateway-z took over its writer lease (Redis refused"), "\(held.stopReason)")
        // The batch was taken back out, the stream's last id set back: the other gateway's seqs 6… go in.
        let stream = "tailgate:{fleet-job}:run:\(held.epoch)"
        #expect(try await redis(server, RedisCommand("XRANGE", [.string(stream), "-", "+"])).array?.count == 1)
        let manifest = "tailgate:{fleet-job}:manifest:\(held.epoch)"
        #expect(try await redis(server, RedisCommand("HGET", [.string(manifest), "last_seq"])).string == "5")
        #expect(try await redis(server, RedisCommand("XADD", [.string(stream), "6-0", "f", "6", "l", "6", "b", "x\n"])).string == "6-0")
        // Fencing is not a failure of Redis: the store stays ok.
        #expect(a.store.health().state == "ok" && a.store.health().failedWrites == 0)
    }

    @Test func aRunHandedOverComesBackWhenTheOtherGatewayLetsItGo() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try Gateway(server, leaseTTL: .seconds(1), label: "gateway-a")
        defer { a.close() }
        let b = try Gateway(server, leaseTTL: .seconds(1), label: "gateway-b")
        let first = try a.bus.remoteWorker(worker)
        try await publish(1...5, into: first)
        // A's lease expires (as if A had been cut off from Redis): A stops its worker, B continues the run.
        _ = try await redis(server, RedisCommand("DEL", [.string(leaseKey)]))
        try await first.whenStopped().get()
        let onB = try b.bus.remoteWorker(worker)
        #expect(onB.epoch == first.epoch && onB.lastPublishedSeq == 5)
        try await publish(6...10, into: onB)
        #expect(throws: BusError.self) { try a.bus.remoteWorker(worker) }
        // B stops serving; the publisher comes back to A: the same run again, where B left it.
        b.close()
        let back = try a.bus.remoteWorker(worker)
        #expect(back !== first && back.epoch == first.epoch)
        #expect(back.lastPublishedSeq == 10 && back.publisherOffset("pub-1") == 10)
        try await publish(11...15, into: back)
        #expect(try await readAll(a.store, back.runID).seqs == Array(1...15))
    }

    @Test func resumeRemoteRunsBringsBackOnlyTheRunsWhoseLeaseItGets() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        // Two open remote runs, left by a gateway that stopped.
        let old = try Gateway(server, label: "old")
        let job1 = try old.bus.remoteWorker(worker)
        let job2 = try old.bus.remoteWorker(WorkerID("other-job")!)
        try await publish(1...3, into: job1)
        try await publish(1...4, into: job2)
        old.close()

        let a = try Gateway(server, label: "gateway-a")
        defer { a.close() }
        #expect(a.bus.resumeRemoteRuns() == 2)
        let b = try Gateway(server, label: "gateway-b")
        defer { b.close() }
        #expect(b.bus.resumeRemoteRuns() == 0, "gateway-a holds both leases")
        #expect(b.bus.worker(worker) == nil)

        // gateway-a lets one go (its publisher stopped it); the other stays its own.
        let stopped = try #require(a.bus.worker(WorkerID("other-job")!))
        #expect(stopped.epoch == job2.epoch && stopped.lastPublishedSeq == 4)
        stopped.stop()
        try await stopped.whenStopped().get()
        try await a.store.flush().get()
        let c = try Gateway(server, label: "gateway-c")
        defer { c.close() }
        #expect(c.bus.resumeRemoteRuns() == 0, "a stopped run does not come back, a held one is not taken")
    }

    /// Waits (up to 5 s) until the lease's holder is `expected`.
    private func waitForHolder(_ server: RedisServerProcess, _ expected: String?, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while try await holder(server) != expected {
            guard ContinuousClock.now < deadline else {
                Issue.record("the lease's holder never became \(expected ?? "none")", sourceLocation: sourceLocation)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
