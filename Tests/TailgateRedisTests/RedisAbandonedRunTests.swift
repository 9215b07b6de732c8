import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TailgateCore
import TailgateRedis
import Testing
@testable import TailgateRedisStore

/// A gateway killed with `kill -9`: its in-process runs are ended as `interrupted` by another gateway's
/// maintenance once their writer lease expires; remote runs (their publisher continues them elsewhere)
/// and runs whose lease is held are left `running`.
@Suite(.enabled(if: RedisServerProcess.shouldRun, Comment(rawValue: RedisServerProcess.notFound)))
struct RedisAbandonedRunTests {
    /// A gateway (a store and a bus) with a 1 s lease and its own maintenance interval.
    final class Gateway: Sendable {
        let gateway: RedisWriterLeaseTests.Gateway
        var store: RedisRunStore { gateway.store }
        var bus: LogBus { gateway.bus }

        init(_ server: RedisServerProcess, maintenanceInterval: TimeAmount, label: String) throws {
            gateway = try RedisWriterLeaseTests.Gateway(server, leaseTTL: .seconds(1), maintenanceInterval: maintenanceInterval, label: label)
        }

        func close() { gateway.close() }
        func crash() { gateway.crash() }
    }

    private func publish(_ count: Int, into worker: Worker) async throws {
        var records = (1...count).map { LogRecord(message: "record \($0)") }
        let enqueued = try #require(worker.enqueue(contentsOf: &records))
        try await worker.whenStored(through: enqueued.firstSeq + UInt64(count) - 1, on: testLoop).get()
    }

    private func redis(_ server: RedisServerProcess, _ commands: [RedisCommand]) async throws -> [RESPValue] {
        let client = RedisClient(configuration: server.configuration, eventLoop: testLoop, logger: quiet)
        defer { _ = client.close() }
        try await client.waitUntilConnected(within: .seconds(2)).get()
        var replies: [RESPValue] = []
        for reply in client.send(commands) { replies.append(try await reply.get()) }
        return replies
    }

    private func manifestField(_ server: RedisServerProcess, _ id: RunID, _ field: String) async throws -> String? {
        try await redis(server, [RedisCommand("HGET", [.string(RedisKeys(prefix: "tailgate").manifest(id)), .string(field)])])[0].string
    }

    @Test func aDeadGatewaysInProcessRunsEndOnceTheirLeaseExpires() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try Gateway(server, maintenanceInterval: .hours(1), label: "gateway-a")
        let alive = try Gateway(server, maintenanceInterval: .hours(1), label: "gateway-c")
        defer { alive.close() }
        let dying = try a.bus.register(WorkerID("in-process-a")!)
        let remote = try a.bus.remoteWorker(WorkerID("remote-a")!)
        let held = try alive.bus.register(WorkerID("in-process-c")!)
        try await publish(5, into: dying)
        try await publish(5, into: remote)
        try await publish(5, into: held)
        #expect(try await manifestField(server, dying.runID, "writer") == a.store.instanceName)

        // B's maintenance every 200 ms.
        let b = try Gateway(server, maintenanceInterval: .milliseconds(200), label: "gateway-b")
        defer { b.close() }
        let crashed = ContinuousClock.now
        a.crash()
        var run = b.store.run(dying.runID)
        while run?.status != .interrupted && ContinuousClock.now - crashed < .seconds(6) {
            try await Task.sleep(for: .milliseconds(50))
            run = b.store.run(dying.runID)
        }
        let waited = ContinuousClock.now - crashed
        let ended = try #require(run)
        #expect(ended.status == .interrupted, "ended within a few seconds of the crash (lease TTL 1 s)")
        #expect(waited >= .milliseconds(600), "not before the lease could have expired (waited \(waited))")
        let reason = "the gateway writing this run stopped renewing its writer lease (gateway \(a.store.instanceName) died or lost Redis)"
        #expect(ended.reason == reason)
        #expect(ended.lastSeq == 5 && ended.stoppedAt != nil)
        // What Redis holds, for every gateway.
        #expect(try await manifestField(server, dying.runID, "status") == "interrupted")
        #expect(try await manifestField(server, dying.runID, "reason") == reason)
        #expect(try await manifestField(server, dying.runID, "stopped_at").flatMap { Int64($0) } == ended.stoppedAt?.microseconds)
        #expect(try await manifestField(server, dying.runID, "last_seq") == "5")

        // Two more maintenance passes: the remote run and the held one stay running.
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await manifestField(server, remote.runID, "status") == "running", "its publisher continues it on another gateway")
        #expect(b.store.run(remote.runID)?.status == .running)
        #expect(try await manifestField(server, held.runID, "status") == "running", "its gateway holds the lease")
        #expect(b.store.run(held.runID)?.status == .running)
        #expect(!held.isStopping)
    }

    @Test func anInProcessRunWhoseLeaseAnotherGatewayHoldsIsEnded() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        // A run as a dead gateway left it, its lease now held by another gateway (same in-process id).
        let id = RunID(worker: WorkerID("in-process-x")!, epoch: "m1abc0")
        let keys = RedisKeys(prefix: "tailgate")
        _ = try await redis(server, [
            RedisCommand("HSET", [.string(keys.manifest(id)), "worker", "in-process-x", "epoch", .string(id.epoch), "owner", "in-process",
                                  "started_at", "1767225600000000", "status", "running", "writer", "0000000000000001 old", "first_seq", "1",
                                  "last_seq", "0", "stored_bytes", "0"]),
            RedisCommand("ZADD", [.string(keys.runs(of: id.worker)), "1767225600000000", .string(id.epoch)]),
            RedisCommand("SADD", [.string(keys.workers), "in-process-x"]),
            RedisCommand("SET", [.string(keys.lease(of: id.worker)), "0000000000000002 new", "PX", "60000"]),
        ])
        let b = try Gateway(server, maintenanceInterval: .hours(1), label: "gateway-b")
        defer { b.close() }
        #expect(b.store.run(id)?.status == .running)
        try await b.store.maintain().get()
        #expect(b.store.run(id)?.status == .interrupted)
        #expect(b.store.run(id)?.reason == "the gateway writing this run (0000000000000001 old) lost its writer lease to gateway 0000000000000002 new")

        // The writer holding its lease again: untouched.
        let other = RunID(worker: WorkerID("in-process-y")!, epoch: "m1abc0")
        _ = try await redis(server, [
            RedisCommand("HSET", [.string(keys.manifest(other)), "worker", "in-process-y", "epoch", .string(other.epoch), "owner", "in-process",
                                  "started_at", "1767225600000000", "status", "running", "writer", "0000000000000003 back"]),
            RedisCommand("ZADD", [.string(keys.runs(of: other.worker)), "1767225600000000", .string(other.epoch)]),
            RedisCommand("SADD", [.string(keys.workers), "in-process-y"]),
            RedisCommand("SET", [.string(keys.lease(of: other.worker)), "0000000000000003 back", "PX", "60000"]),
        ])
        try await b.store.maintain().get()
        #expect(b.store.run(other)?.status == .running)
        #expect(try await manifestField(server, other, "status") == "running")
    }
}
