import Foundation
import Logging
import NIOCore
import NIOPosix
import TailgateCore
import TailgateRedis
import Testing
@testable import TailgateRedisStore

/// The Redis backend of `RunStore` against a real `redis-server` started by each test.
@Suite(.enabled(if: RedisServerProcess.shouldRun, Comment(rawValue: RedisServerProcess.notFound)))
struct RedisRunStoreTests {
    private func configuration(_ server: RedisServerProcess, retainAge: TimeAmount? = nil, retainBytes: Int? = nil,
                               writeQueueBytes: Int = 64 << 20) -> RedisStoreConfiguration {
        var redis = server.configuration
        redis.connectTimeout = .seconds(2)
        return RedisStoreConfiguration(redis: redis, retainAge: retainAge, retainBytes: retainBytes, maintenanceInterval: .hours(1),
                                       writeQueueBytes: writeQueueBytes, closeTimeout: .seconds(2))
    }

    private func open(_ server: RedisServerProcess, retainAge: TimeAmount? = nil, retainBytes: Int? = nil,
                      writeQueueBytes: Int = 64 << 20) throws -> RedisRunStore {
        try RedisRunStore(configuration: configuration(server, retainAge: retainAge, retainBytes: retainBytes, writeQueueBytes: writeQueueBytes),
                          logger: quiet)
    }

    @Test func beginAppendReadAcrossManyBatches() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server)
        defer { store.close() }
        let id = runID()
        store.begin(newRun(id))
        try await appendAndWait(store, id, batches(1...3000, perBatch: 50))

        let outcome = try await readAll(store, id, maxBytes: 32 << 10)
        #expect(outcome.seqs == Array(1...3000))
        #expect(outcome.gaps.isEmpty)
        #expect(outcome.chunks > 10, "reads are bounded by maxBytes")
        for start: UInt64 in [1, 2, 49, 50, 51, 777, 2999, 3000] {
            let chunk = try await store.read(id, from: start, through: start + 99, maxBytes: 1 << 20, on: testLoop).get()
            guard case .records(let batch) = chunk else { Issue.record("no records at \(start): \(chunk)"); continue }
            #expect(seqs(of: batch) == Array(start...min(start + 99, 3000)))
        }
        let one = try await store.read(id, from: 1234, through: .max, maxBytes: 1, on: testLoop).get()
        guard case .records(let single) = one else { Issue.record("no record: \(one)"); return }
        #expect(seqs(of: single) == [1234], "at least one record, and no more than maxBytes allows")
        let beyond = try await store.read(id, from: 3001, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .none = beyond else { Issue.record("expected none, got \(beyond)"); return }

        let info = try #require(store.run(id))
        #expect(info.firstSeq == 1 && info.lastSeq == 3000 && info.status == .running)
        #expect(info.storedBytes > 300_000)
        #expect(store.health() == StoreHealth(state: "ok", storedBytes: info.storedBytes, runs: 1))

        // What Redis holds: one entry per batch, ids from last seqs, the manifest and the registry.
        let client = store.client
        #expect(try await client.send(RedisCommand("XLEN", "tailgate:{job-1}:run:e1")).get() == .integer(60))
        let first = try await client.send(RedisCommand("XRANGE", "tailgate:{job-1}:run:e1", "-", "+", "COUNT", "1")).get()
        #expect(first.array?.first?.array?.first == .bulk("50-0"))
        #expect(try await client.send(RedisCommand("HGET", "tailgate:{job-1}:manifest:e1", "last_seq")).get() == .bulk("3000"))
        #expect(try await client.send(RedisCommand("SMEMBERS", "tailgate:workers")).get() == .array([.bulk("job-1")]))
        #expect(try await client.send(RedisCommand("ZRANGE", "tailgate:{job-1}:runs", "0", "-1")).get() == .array([.bulk("e1")]))
    }

    @Test func seqJumpsAreGapsAndPendingBatchesAreRead() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server)
        defer { store.close() }
        let id = runID()
        store.begin(newRun(id))
        try await appendAndWait(store, id, [makeBatch(firstSeq: 1, count: 10), makeBatch(firstSeq: 21, count: 10), makeBatch(firstSeq: 41, count: 5)])
        let outcome = try await readAll(store, id)
        #expect(outcome.seqs == Array(1...10) + Array(21...30) + Array(41...45))
        #expect(outcome.gaps == [11...20, 31...40])
        let bounded = try await store.read(id, from: 12, through: 18, maxBytes: 1 << 20, on: testLoop).get()
        guard case .none = bounded else { Issue.record("nothing stored up to the bound: \(bounded)"); return }
        let stopsAtJump = try await store.read(id, from: 5, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .records(let batch) = stopsAtJump else { Issue.record("\(stopsAtJump)"); return }
        #expect(seqs(of: batch) == Array(5...10))
    }

    @Test func endAndResumeKeepSeqsAndPublisherOffsets() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let id = runID("remote-7", "abc123")
        do {
            let store = try open(server)
            store.begin(newRun(id))
            try await appendAndWait(store, id, [makeBatch(firstSeq: 1, count: 5)], offsets: ["pub-a": 5])
            try await appendAndWait(store, id, [makeBatch(firstSeq: 6, count: 5)], offsets: ["pub-a": 10, "pub-b": 3])
            store.close()
        }
        // A new store object on the same Redis (another gateway, or this one restarted) finds the run.
        let again = try open(server)
        defer { again.close() }
        let found = try #require(again.run(id))
        #expect(found.lastSeq == 10 && found.firstSeq == 1 && found.status == .running && found.owner == .remote)
        #expect(again.allRuns().map(\.id) == [id])
        let resumed = try #require(again.resume(id))
        #expect(resumed.info.lastSeq == 10)
        #expect(resumed.publisherOffsets == ["pub-a": 10, "pub-b": 3])
        try await appendAndWait(again, id, [makeBatch(firstSeq: 11, count: 5)], offsets: ["pub-a": 15])
        again.end(id, RunEnding(status: .failed, exitCode: 3, reason: "exit status 3", at: Timestamp(microseconds: 1_800_000_000_000_000)))
        try await again.flush().get()
        #expect(try await readAll(again, id).seqs == Array(1...15))

        let third = try open(server)
        defer { third.close() }
        let ended = try #require(third.run(id))
        #expect(ended.status == .failed && ended.exitCode == 3 && ended.reason == "exit status 3")
        #expect(ended.stoppedAt == Timestamp(microseconds: 1_800_000_000_000_000))
        #expect(ended.lastSeq == 15)
        #expect(third.resume(runID("remote-7", "nosuch")) == nil)
    }

    @Test func aBatchWrittenTwiceIsStoredOnce() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server)
        defer { store.close() }
        let id = runID()
        store.begin(newRun(id))
        let batch = makeBatch(firstSeq: 1, count: 10)
        try await appendAndWait(store, id, [batch, batch, makeBatch(firstSeq: 5, count: 3), makeBatch(firstSeq: 11, count: 2)])
        #expect(try await readAll(store, id).seqs == Array(1...12))
        #expect(try await store.client.send(RedisCommand("XLEN", "tailgate:{job-1}:run:e1")).get() == .integer(2))
    }

    @Test func retentionDeletesOldRunsAndTrimsRunningOnes() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server, retainAge: .seconds(3600), retainBytes: 1 << 20)
        defer { store.close() }
        let old = runID("job-1", "old")
        let recent = runID("job-1", "recent")
        let running = runID("job-2", "live")
        let longAgo = Timestamp(microseconds: Timestamp.now().microseconds - 2 * 3_600_000_000)
        store.begin(newRun(old, startedAt: longAgo))
        try await appendAndWait(store, old, [makeBatch(firstSeq: 1, count: 10)])
        store.end(old, RunEnding(status: .stopped, reason: "stopped", at: longAgo))
        store.begin(newRun(recent, startedAt: Timestamp(microseconds: longAgo.microseconds + 1)))
        try await appendAndWait(store, recent, [makeBatch(firstSeq: 1, count: 10)])
        store.end(recent, RunEnding(status: .succeeded, exitCode: 0, reason: "exit status 0"))
        try await store.flush().get()
        try await store.applyRetention().get()
        #expect(store.run(old) == nil, "ended longer ago than retainAge")
        #expect(store.run(recent) != nil)
        #expect(try await store.client.send(RedisCommand("EXISTS", "tailgate:{job-1}:run:old", "tailgate:{job-1}:manifest:old")).get() == .integer(0))

        // Over retainBytes (1 MiB): the finished run goes first, then the running run's oldest entries.
        store.begin(newRun(running))
        try await appendAndWait(store, running, batches(1...12_000, perBatch: 100, messageBytes: 150))
        #expect(try #require(store.run(running)).storedBytes > 1 << 20)
        try await store.applyRetention().get()
        #expect(store.run(recent) == nil)
        let trimmed = try #require(store.run(running))
        #expect(trimmed.firstSeq > 1 && trimmed.lastSeq == 12_000)
        #expect(trimmed.storedBytes <= 1 << 20 && trimmed.storedBytes > (1 << 20) - 30_000, "whole batches of about 17 KB go")
        let outcome = try await readAll(store, running)
        #expect(outcome.seqs == Array(trimmed.firstSeq...12_000))
        #expect(outcome.gaps == [1...(trimmed.firstSeq - 1)])
        #expect((trimmed.firstSeq - 1) % 100 == 0, "trimmed at a batch's end")
        let before = try await store.read(running, from: 1, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .gap(1, trimmed.firstSeq - 1) = before else { Issue.record("trimmed records read as a gap: \(before)"); return }
    }

    @Test func redisDownDropsBeyondTheQueueAndRecovers() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server, writeQueueBytes: 1 << 16)
        defer { store.close() }
        let id = runID()
        store.begin(newRun(id))
        try await appendAndWait(store, id, [makeBatch(firstSeq: 1, count: 10)])
        server.kill()
        try await waitFor { store.health().state == "failed" }
        // Queued while Redis is away, up to writeQueueBytes (64 KiB); the rest is dropped and counted.
        for batch in batches(11...1010, perBatch: 10, messageBytes: 200) { store.append(batch, to: id, publisherOffsets: [:]) }
        let health = store.health()
        #expect(health.state == "failed")
        #expect(health.failedWrites > 0)
        // Worded as `tailgate run` words its own overflow: how many records, and why.
        #expect(health.lastError?.hasPrefix("\(health.failedWrites * 10) records dropped for Redis: more than 64 KiB waited for it (") == true,
                "\(health.lastError ?? "")")
        #expect(health.lastError?.hasSuffix("); they are in memory only") == true, "\(health.lastError ?? "")")
        // A publisher waiting is answered at once while failed.
        try await store.whenWritten(id, through: 1010, on: testLoop).get()
        // Pending batches can still be read while Redis is down.
        let pending = try await store.read(id, from: 11, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .records(let batch) = pending else { Issue.record("pending batch not readable: \(pending)"); return }
        #expect(batch.firstSeq == 11)

        try server.start()
        try await waitFor { store.health().writeQueue == 0 }
        store.append(makeBatch(firstSeq: 1011, count: 10), to: id, publisherOffsets: [:])
        try await store.whenWritten(id, through: 1020, on: testLoop).get()
        try await waitFor { store.health().state == "ok" }
        #expect(store.health().failedWrites == health.failedWrites)
        #expect(store.health().lastError == nil)
        // The new Redis (no persistence) holds what was queued and written after it came back.
        let outcome = try await readAll(store, id, from: 11)
        #expect(outcome.seqs.first == 11 && outcome.seqs.last == 1020)
        #expect(outcome.gaps.count == 1, "the dropped batches are one gap: \(outcome.gaps)")
    }

    @Test func redisErrorRepliesMarkTheStoreFailed() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server)
        defer { store.close() }
        let id = runID()
        // The run's stream key holds a string: Redis refuses XADD with WRONGTYPE.
        _ = try await store.client.send(RedisCommand("SET", "tailgate:{job-1}:run:e1", "not a stream")).get()
        store.begin(newRun(id))
        store.append(makeBatch(firstSeq: 1, count: 5), to: id, publisherOffsets: [:])
        try await waitFor { store.health().failedWrites == 1 }
        let health = store.health()
        #expect(health.state == "failed")
        #expect(health.lastError?.contains("WRONGTYPE") == true, "\(health.lastError ?? "")")
        // The next write that Redis takes clears it.
        _ = try await store.client.send(RedisCommand("DEL", "tailgate:{job-1}:run:e1")).get()
        store.append(makeBatch(firstSeq: 6, count: 5), to: id, publisherOffsets: [:])
        // (whenWritten answers at once while the store is failed: wait for the state itself.)
        try await waitFor { store.health().state == "ok" }
        #expect(store.health().failedWrites == 1)
        #expect(try await readAll(store, id).seqs == Array(6...10))
    }

    @Test func twoStoresOnOneRedisSeeEachOthersRuns() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let a = try open(server)
        defer { a.close() }
        let b = try open(server)
        defer { b.close() }
        let begun = runID("strategy-1", "e1")
        let unbegun = runID("publisher-9", "e2")  // first seen through its batches, as after a restart
        a.begin(newRun(begun, owner: .inProcess))
        try await appendAndWait(a, begun, batches(1...500, perBatch: 100))
        try await appendAndWait(a, unbegun, [makeBatch(firstSeq: 1, count: 7)], offsets: ["p": 7])
        #expect(b.run(begun) == nil, "not yet refreshed")
        try await b.maintain().get()
        #expect(Set(b.allRuns().map(\.id)) == [begun, unbegun])
        #expect(b.run(begun)?.lastSeq == 500 && b.run(begun)?.owner == .inProcess)
        #expect(b.run(unbegun)?.lastSeq == 7 && b.run(unbegun)?.owner == .remote)
        #expect(try await readAll(b, begun).seqs == Array(1...500))
        #expect(b.resume(unbegun)?.publisherOffsets == ["p": 7])
        a.end(begun, RunEnding(status: .stopped, reason: "stopped"))
        try await a.flush().get()
        try await b.maintain().get()
        #expect(b.run(begun)?.status == .stopped)
    }

    @Test func withAppendOnlyAlwaysNothingAcknowledgedIsLostToAKill() async throws {
        // The AOF in the server's folder survives the SIGKILL and is read back by the restarted server.
        let server = try RedisServerProcess(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
        defer { server.stop() }
        let id = runID("durable-1", "e1")
        do {
            let store = try open(server)
            let appendOnly = try await store.client.send(RedisCommand("CONFIG", "GET", "appendonly")).get()
            #expect(appendOnly == .array([.bulk("appendonly"), .bulk("yes")]))
            store.begin(newRun(id))
            try await appendAndWait(store, id, batches(1...2000, perBatch: 40), offsets: ["pub": 2000])
            server.kill()
            store.close()
        }
        try server.start()
        let again = try open(server)
        defer { again.close() }
        let info = try #require(again.run(id))
        #expect(info.lastSeq == 2000 && info.firstSeq == 1)
        #expect(try await readAll(again, id).seqs == Array(1...2000))
        #expect(again.resume(id)?.publisherOffsets == ["pub": 2000])
    }

    @Test func concurrentPublishersAndReaders() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let store = try open(server)
        defer { store.close() }
        let ids = (1...4).map { runID("worker-\($0)", "e1") }
        for id in ids { store.begin(newRun(id)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in ids {
                group.addTask {
                    for batch in batches(1...3000, perBatch: 30) {
                        store.append(batch, to: id, publisherOffsets: ["p": batch.lastSeq])
                        if batch.lastSeq % 600 == 0 { try await store.whenWritten(id, through: batch.lastSeq, on: testLoop).get() }
                    }
                }
                group.addTask {
                    // A reader following the writer: whatever it gets is in order, from pending or Redis.
                    var next: UInt64 = 1
                    while next <= 3000 {
                        switch try await store.read(id, from: next, through: .max, maxBytes: 8 << 10, on: testLoop).get() {
                        case .records(let batch):
                            #expect(batch.firstSeq == next)
                            next = batch.lastSeq + 1
                        case .gap(let from, let to):
                            Issue.record("gap \(from)...\(to) in \(id)")
                            next = to + 1
                        case .none:
                            await Task.yield()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await store.flush().get()
        for id in ids {
            #expect(store.run(id)?.lastSeq == 3000)
            #expect(try await readAll(store, id).seqs == Array(1...3000))
        }
        #expect(store.health().state == "ok" && store.health().writeQueue == 0)
    }

    @Test func badURLsAreRefusedWithTheirReason() {
        #expect(throws: RedisError.invalidURL("http://h", reason: "the scheme must be redis://, not http://")) {
            _ = try RedisStoreConfiguration(url: "http://h")
        }
        #expect(throws: ConfigurationError.self) {
            var configuration = RedisStoreConfiguration(redis: RedisConfiguration(host: "h"))
            configuration.keyPrefix = "a{b}"
            _ = try RedisRunStore(configuration: configuration, logger: quiet)
        }
    }
}

// MARK: Helpers, as the embedded store's tests have them

let testLoop: EventLoop = MultiThreadedEventLoopGroup.singleton.next()

func runID(_ worker: String = "job-1", _ epoch: String = "e1") -> RunID {
    RunID(worker: WorkerID(worker)!, epoch: epoch)
}

func newRun(_ id: RunID, startedAt: Timestamp = .now(), owner: WorkerOwner = .remote) -> RunInfo {
    RunInfo(id: id, owner: owner, startedAt: startedAt)
}

func makeBatch(firstSeq: UInt64, count: Int, messageBytes: Int = 100) -> Batch {
    var builder = BatchBuilder(firstSeq: firstSeq)
    for offset in 0..<count {
        let seq = firstSeq + UInt64(offset)
        let text = "record \(seq) "
        let padding = String(repeating: "x", count: max(0, messageBytes - text.count))
        builder.append(LogRecord(message: text + padding), timestamp: Timestamp(microseconds: 1_700_000_000_000_000 + Int64(seq)))
    }
    return builder.finish()!
}

func batches(_ seqs: ClosedRange<UInt64>, perBatch: Int, messageBytes: Int = 100) -> [Batch] {
    stride(from: seqs.lowerBound, through: seqs.upperBound, by: perBatch).map { first in
        makeBatch(firstSeq: first, count: Int(min(UInt64(perBatch), seqs.upperBound - first + 1)), messageBytes: messageBytes)
    }
}

func seqs(of batch: Batch) -> [UInt64] {
    var seqs: [UInt64] = []
    batch.forEachRecord { seq, record in
        let object = try? JSONSerialization.jsonObject(with: Data(record.readableBytesView)) as? [String: Any]
        let storedSeq = (object?["seq"] as? NSNumber)?.uint64Value
        let message = object?["message"] as? String ?? ""
        #expect(storedSeq == seq, "record \(seq) holds seq \(String(describing: storedSeq))")
        #expect(message.hasPrefix("record \(seq) "), "record \(seq) holds message \(message.prefix(30))")
        seqs.append(seq)
    }
    return seqs
}

struct ReadOutcome: Equatable {
    var seqs: [UInt64] = []
    var gaps: [ClosedRange<UInt64>] = []
    var chunks = 0
}

func readAll(_ store: RunStore, _ id: RunID, from seq: UInt64 = 1, through bound: UInt64 = .max,
             maxBytes: Int = 64 << 10) async throws -> ReadOutcome {
    var outcome = ReadOutcome()
    var next = seq
    while next <= bound {
        switch try await store.read(id, from: next, through: bound, maxBytes: maxBytes, on: testLoop).get() {
        case .records(let batch):
            #expect(batch.firstSeq == next)
            outcome.seqs += seqs(of: batch)
            outcome.chunks += 1
            next = batch.lastSeq + 1
        case .gap(let from, let to):
            #expect(from == next && to >= from)
            outcome.gaps.append(from...to)
            next = to + 1
        case .none:
            return outcome
        }
    }
    return outcome
}

func appendAndWait(_ store: RunStore, _ id: RunID, _ batches: [Batch], offsets: [String: UInt64] = [:]) async throws {
    for batch in batches { store.append(batch, to: id, publisherOffsets: offsets) }
    if let last = batches.last { try await store.whenWritten(id, through: last.lastSeq, on: testLoop).get() }
}

/// Waits (up to 10 s) until `condition` holds; fails the test otherwise. For states that change on
/// another thread with no event to await (the store's health after Redis goes away).
func waitFor(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition never held", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
