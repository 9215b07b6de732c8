import Foundation
import NIOCore
import Synchronization
import TailgateCore
import TailgateRedis
import Testing
@testable import TailgateRedisStore

/// Any gateway serves any worker: two gateways (a `RedisRunStore` and a `LogBus` each) on one real
/// `redis-server`; B mirrors the runs A writes (`LogBus.mirror(of:)`, `RedisRunFollowers`).
@Suite(.enabled(if: RedisServerProcess.shouldRun, Comment(rawValue: RedisServerProcess.notFound)))
struct RedisMirrorTests {
    typealias Gateway = RedisWriterLeaseTests.Gateway

    private let worker = WorkerID("fleet-job")!

    /// The batches of `worker`'s ring from `seq` on, until it is caught up.
    private func ringBatches(_ worker: Worker, from seq: UInt64) -> [Batch] {
        var batches: [Batch] = []
        var next = seq
        while case .batch(let batch) = worker.read(at: next) {
            batches.append(batch)
            next = batch.lastSeq + 1
        }
        return batches
    }

    private func waitUntil(_ what: String, within seconds: Double = 10, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < deadline else {
                Issue.record("timed out waiting for \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private func publish(_ seqs: ClosedRange<UInt64>, into worker: Worker, publisher: String? = nil) async throws {
        var records = seqs.map { LogRecord(message: "record \($0)") }
        let lines = publisher.map { Worker.NumberedLines(publisher: $0, offsets: Array(seqs), lastOffset: seqs.upperBound) }
        _ = try #require(worker.enqueue(contentsOf: &records, lines: lines))
        try await worker.whenStored(through: seqs.upperBound, on: testLoop).get()
    }

    @Test func aMirrorHoldsTheWritersBatchesByteForByteAndEndsWithIt() async throws {
        try await RedisWriterLeaseTests.withGateways { _, a, b in
            let writer = try a.bus.register(worker)
            try await a.store.flush().get()
            let run = try #require(b.store.newestRun(of: worker))
            #expect(run.id == writer.runID && run.status == .running)
            let mirror = try #require(b.bus.mirror(of: run))
            #expect(mirror.isMirror && mirror.epoch == writer.epoch && mirror.owner == .inProcess)
            // Asked again: the same mirror (one per gateway and run).
            #expect(b.bus.mirror(of: run) === mirror)
            // Nothing can be published into a mirror.
            #expect(mirror.publish(LogRecord(message: "not here")) == false)

            for part in 0..<5 {
                let first = UInt64(part * 20 + 1)
                try await publish(first...(first + 19), into: writer)
            }
            try await waitUntil("the mirror to hold seqs 1-100") { mirror.lastPublishedSeq == 100 && ringBatches(mirror, from: 1).last?.lastSeq == 100 }
            let written = ringBatches(writer, from: 1)
            let mirrored = ringBatches(mirror, from: 1)
            #expect(mirrored.map(\.firstSeq) == written.map(\.firstSeq))
            #expect(mirrored.map(\.payload) == written.map(\.payload), "the same bytes as the writer's batches")

            writer.stop(reason: "done for today", status: .succeeded, exitCode: 0)
            try await waitUntil("the mirror to end") { mirror.isStopping }
            try await mirror.whenStopped().get()
            #expect(mirror.ending.reason == "done for today" && mirror.ending.status == .succeeded && mirror.ending.exitCode == 0)
            // The mirror wrote nothing: Redis holds the writer's ending, not another.
            let stored = try #require(b.store.newestRun(of: worker))
            #expect(stored.status == .succeeded && stored.lastSeq == 100)
        }
    }

    @Test func aMirrorBecomesTheWriterWhenTheLeaseComesToItsGateway() async throws {
        try await RedisWriterLeaseTests.withGateways(leaseTTL: .seconds(1)) { _, a, b in
            let writer = try a.bus.remoteWorker(worker)
            try await publish(1...10, into: writer, publisher: "pub-1")
            let run = try #require(b.store.newestRun(of: worker))
            let mirror = try #require(b.bus.mirror(of: run))
            try await publish(11...20, into: writer, publisher: "pub-1")
            try await waitUntil("the mirror to hold seq 20") { mirror.lastPublishedSeq == 20 }
            // A publisher on B is refused while A holds the lease, and the mirror stays a mirror.
            #expect(throws: BusError.self) { try b.bus.remoteWorker(worker) }
            #expect(mirror.isMirror)

            a.crash()
            var taken: Worker?
            try await waitUntil("B to take the run over", within: 5) {
                taken = try? b.bus.remoteWorker(worker)
                return taken != nil
            }
            #expect(taken === mirror, "the mirror itself continues the run")
            #expect(!mirror.isMirror && mirror.publisherOffset("pub-1") == 20)
            var records = (18...30).map { LogRecord(message: "record \($0)") }
            let lines = Worker.NumberedLines(publisher: "pub-1", offsets: Array(18...30), lastOffset: 30)
            let enqueued = try #require(mirror.enqueue(contentsOf: &records, lines: lines))
            #expect(enqueued.firstSeq == 21 && enqueued.published == 10 && enqueued.duplicates == 3)
            try await mirror.whenStored(through: 30, on: testLoop).get()
            // The mirror's ring began after the 10 records stored before it was made (older ones are read
            // from the store); from there it holds the previous writer's seqs, then its own, in order.
            let seqs = ringBatches(mirror, from: 11).flatMap { Array($0.firstSeq...$0.lastSeq) }
            #expect(seqs == Array(11...30))
            let chunk = try await b.store.read(mirror.runID, from: 1, through: 30, maxBytes: 1 << 20, on: testLoop).get()
            guard case .records(let stored) = chunk else { Issue.record("no records stored: \(chunk)"); return }
            #expect(stored.firstSeq == 1 && stored.lastSeq == 30)
        }
    }

    @Test func followersGetTheEndOfARunThatEndedBeforeAndNothingAfterCancel() async throws {
        try await RedisWriterLeaseTests.withGateways { _, a, b in
            let writer = try a.bus.register(worker)
            try await publish(1...5, into: writer)
            writer.stop(reason: "finished", status: .stopped)
            try await writer.whenStopped().get()
            try await a.store.flush().get()

            let events = Mutex<[String]>([])
            let ended = b.store.follow(writer.runID, after: 2, on: testLoop) { event in
                switch event {
                case .batch(let batch): events.withLock { $0.append("batch \(batch.firstSeq)-\(batch.lastSeq)") }
                case .ended(let run): events.withLock { $0.append("ended \(run?.reason ?? "-")") }
                }
            }
            #expect(ended != nil)
            try await waitUntil("the end") { events.withLock { $0.last?.hasPrefix("ended") ?? false } }
            // Seqs 3-5 of the one stored batch 1-5, then the end.
            #expect(events.withLock { $0 } == ["batch 1-5", "ended finished"])

            // Followed from before its manifest reaches Redis (begun a moment ago): not taken for a run that
            // is no longer stored.
            let later = Mutex<[String]>([])
            let live = try a.bus.register(WorkerID("live")!)
            let following = try #require(b.store.follow(live.runID, after: 0, on: testLoop) { event in
                let text: String
                switch event {
                case .batch(let batch): text = "batch \(batch.firstSeq)-\(batch.lastSeq)"
                case .ended: text = "ended"
                }
                later.withLock { $0.append(text) }
            })
            try await Task.sleep(for: .milliseconds(600))
            try await publish(1...3, into: live)
            try await waitUntil("the first batch", within: 30) { !later.withLock { $0 }.isEmpty }
            following.cancel()
            try await publish(4...6, into: live)
            try await Task.sleep(for: .milliseconds(600))
            #expect(later.withLock { $0 } == ["batch 1-3"], "one batch, nothing after cancel")
            #expect(b.store.followers.count == 0)
        }
    }
}
