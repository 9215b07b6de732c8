import Foundation
import NIOCore
import TailgateCore
import Testing
@testable import TailgateStore

@Suite("FileRunStore: retention")
struct RetentionTests {
    private static let day: Int64 = 86_400_000_000

    @Test func runsStoppedLongerAgoThanRetainAgeAreDeleted() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let now = Timestamp.now()
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, retainAge: .hours(24 * 7)),
                                     logger: LogRecorder().logger)
        let old = runID("old-worker", "e1")
        let recent = runID("w", "e1")
        let open = runID("w", "e2")
        store.begin(newRun(old, startedAt: Timestamp(microseconds: now.microseconds - 40 * Self.day)))
        try await appendAndWait(store, old, [makeBatch(firstSeq: 1, count: 10)])
        store.end(old, RunEnding(status: .stopped, reason: "worker stopped", at: Timestamp(microseconds: now.microseconds - 30 * Self.day)))
        store.begin(newRun(recent, startedAt: Timestamp(microseconds: now.microseconds - 2 * Self.day)))
        try await appendAndWait(store, recent, [makeBatch(firstSeq: 1, count: 10)])
        store.end(recent, RunEnding(status: .succeeded, exitCode: 0, reason: "exited with status 0",
                                    at: Timestamp(microseconds: now.microseconds - Self.day)))
        store.begin(newRun(open, startedAt: Timestamp(microseconds: now.microseconds - 60 * Self.day)))
        try await appendAndWait(store, open, [makeBatch(firstSeq: 1, count: 10)])

        store.applyRetention()
        #expect(store.run(old) == nil)
        #expect(!FileManager.default.fileExists(atPath: folder.dataDirectory + "/runs/old-worker"), "a worker without runs goes too")
        let gone = try await store.read(old, from: 1, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .none = gone else { Issue.record("expected none: \(gone)"); return }
        #expect(store.allRuns().map(\.id) == [recent, open], "an open run is never too old (newest start first)")
        #expect(store.health().runs == 2)
        store.close()

        let reopened = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        #expect(reopened.allRuns().count == 2)
        reopened.close()
    }

    @Test func theOldestFinishedRunsGoFirstWhileOverBudget() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, retainBytes: 1 << 20),
                                     logger: LogRecorder().logger)
        let start = Timestamp.now().microseconds - Self.day
        let ids = (0..<3).map { runID("w", "e\($0)") }
        for (number, id) in ids.enumerated() {
            store.begin(newRun(id, startedAt: Timestamp(microseconds: start + Int64(number) * 1_000_000)))
            try await appendAndWait(store, id, batches(1...2000, perBatch: 100))
            store.end(id, RunEnding(status: .stopped, reason: "worker stopped"))
        }
        let sizes = ids.map { store.run($0)?.storedBytes ?? 0 }
        #expect(sizes.reduce(0, +) > 1 << 20 && sizes[1] + sizes[2] <= 1 << 20, "one run over the budget")
        store.applyRetention()
        let left = store.allRuns()
        #expect(left.map(\.id) == [ids[2], ids[1]], "the oldest went, and only as many as needed")
        #expect(!FileManager.default.fileExists(atPath: folder.dataDirectory + "/runs/w/e0"))
        #expect(store.health().storedBytes == sizes[1] + sizes[2])
        #expect(left.allSatisfy { $0.firstSeq == 1 && $0.lastSeq == 2000 }, "finished runs go whole")
        store.close()
    }

    @Test func aRunningRunLosesItsOldestSegmentsOnlyWhenFinishedRunsAreNotEnough() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, retainBytes: 1 << 20),
                                     logger: LogRecorder().logger)
        let finished = runID("w", "old")
        let running = runID("w", "new")
        store.begin(newRun(finished, startedAt: Timestamp(microseconds: Timestamp.now().microseconds - Self.day)))
        try await appendAndWait(store, finished, batches(1...1000, perBatch: 100))
        store.end(finished, RunEnding(status: .stopped, reason: "worker stopped"))
        store.begin(newRun(running))
        try await appendAndWait(store, running, batches(1...8000, perBatch: 100))
        let segmentsBefore = fileNames(folder.dataDirectory + "/runs/w/new").filter { $0.hasSuffix(".seg") }

        store.applyRetention()
        #expect(store.run(finished) == nil)
        let info = try #require(store.run(running))
        #expect(info.status == .running)
        #expect(info.firstSeq > 1 && info.lastSeq == 8000)
        #expect(store.health().storedBytes <= 1 << 20)
        let segmentsAfter = fileNames(folder.dataDirectory + "/runs/w/new").filter { $0.hasSuffix(".seg") }
        #expect(segmentsAfter.count < segmentsBefore.count)
        #expect(segmentsAfter.last == segmentsBefore.last, "the segment being written stays")

        let outcome = try await readAll(store, running)
        #expect(outcome.gaps == [1...(info.firstSeq - 1)], "deleted records are a gap")
        #expect(outcome.seqs == Array(info.firstSeq...8000))
        try await appendAndWait(store, running, [makeBatch(firstSeq: 8001, count: 10)])
        #expect(try await readAll(store, running, from: 7990).seqs == Array(7990...8010))
        store.close()
    }
}
