import Foundation
import NIOCore
import TailgateCore
import Testing
@testable import TailgateStore

@Suite("FileRunStore: writing and reading")
struct FileRunStoreTests {
    @Test(arguments: FsyncPolicy.allCases)
    func roundTripAcrossSegments(fsync: FsyncPolicy) async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, fsync: fsync), logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        try await appendAndWait(store, id, batches(1...3000, perBatch: 50))

        let outcome = try await readAll(store, id, maxBytes: 32 << 10)
        #expect(outcome.seqs == Array(1...3000))
        #expect(outcome.gaps.isEmpty)
        #expect(outcome.chunks > 10, "reads are bounded by maxBytes")
        let names = fileNames(folder.dataDirectory + "/runs/job-1/e1")
        #expect(names.filter { $0.hasSuffix(".seg") }.count >= 4)
        #expect(names.filter { $0.hasSuffix(".idx") }.count == names.filter { $0.hasSuffix(".seg") }.count)
        #expect(names.contains("manifest.json"))
        #expect(names.contains("00000000000000000001.seg"))
        for name in names where name.hasSuffix(".seg") {
            #expect(fileSize(folder.dataDirectory + "/runs/job-1/e1/" + name) <= 64 << 10)
        }
        let info = try #require(store.run(id))
        #expect(info.firstSeq == 1 && info.lastSeq == 3000 && info.status == .running)
        #expect(info.storedBytes > 300_000)
        #expect(store.health() == StoreHealth(state: "ok", storedBytes: info.storedBytes, runs: 1))
        store.close()
    }

    @Test func readsFromTheMiddleSeekWithTheIndex() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, segmentBytes: 1 << 20), logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        for batch in batches(1...6000, perBatch: 20) { try await appendAndWait(store, id, [batch]) }

        let index = try #require(FileManager.default.contents(atPath: folder.dataDirectory + "/runs/job-1/e1/00000000000000000001.idx"))
        #expect(index.count >= 10 * 16, "an entry about every 64 KiB of a 1 MiB segment")
        #expect(index.count % 16 == 0)

        for start: UInt64 in [1, 2, 777, 2048, 3333, 4999, 5999, 6000] {
            let chunk = try await store.read(id, from: start, through: start + 99, maxBytes: 1 << 20, on: testLoop).get()
            guard case .records(let batch) = chunk else { Issue.record("no records at \(start): \(chunk)"); continue }
            #expect(seqs(of: batch) == Array(start...min(start + 99, 6000)))
        }
        let one = try await store.read(id, from: 4321, through: .max, maxBytes: 1, on: testLoop).get()
        guard case .records(let single) = one else { Issue.record("no record: \(one)"); return }
        #expect(seqs(of: single) == [4321], "at least one record, and no more than maxBytes allows")
        let beyond = try await store.read(id, from: 6001, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        guard case .none = beyond else { Issue.record("expected none, got \(beyond)"); return }
        store.close()
    }

    @Test func seqJumpsAreGaps() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
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
        store.close()
    }

    @Test func queuedBatchesAreReadBeforeTheyAreWritten() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        // Read each batch right after appending it: wherever it is (queued, being written, on disk),
        // a read finds it, never a gap.
        for batch in batches(1...4000, perBatch: 40) {
            store.append(batch, to: id, publisherOffsets: [:])
            let chunk = try await store.read(id, from: batch.firstSeq, through: .max, maxBytes: 1 << 20, on: testLoop).get()
            guard case .records(let found) = chunk else { Issue.record("batch \(batch.firstSeq) not found: \(chunk)"); return }
            #expect(found.firstSeq == batch.firstSeq && found.lastSeq >= batch.lastSeq)
        }
        try await store.whenWritten(id, through: 4000, on: testLoop).get()
        #expect(try await readAll(store, id).seqs == Array(1...4000))
        store.close()
    }

    /// The frames of the run's first segment, by first seq.
    private func frames(_ folder: TemporaryFolder, _ id: RunID) throws -> [UInt64] {
        let runPath = StoreLayout(root: folder.dataDirectory).runPath(id)
        guard let segment = try RunFiles.list(runPath).segments.first else { return [] }
        let scanner = FrameScanner(file: try DiskFile.openForReading(StoreLayout.segmentPath(inRun: runPath, firstSeq: segment.firstSeq)),
                                   from: 0, to: segment.bytes)
        var starts: [UInt64] = []
        while let frame = try scanner.next() { starts.append(frame.header.firstSeq) }
        return starts
    }

    /// Waits until the writer sleeps for want of work (so that the next batch wakes it and starts a delay).
    private func untilWriterIdle(_ store: FileRunStore) async throws {
        store.flush()
        while !store.shared.state.withLock({ $0.writerIdle }) { try await Task.sleep(for: .milliseconds(1)) }
    }

    @Test func theWriterLetsBatchesGatherUnlessSomeoneWaits() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        var configuration = testConfiguration(folder.dataDirectory)
        // Long, so that a test starved of CPU on a busy machine still looks well inside the delay.
        configuration.coalesceDelay = .seconds(10)
        let store = try FileRunStore(configuration: configuration, logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        try await untilWriterIdle(store)
        for batch in batches(1...50, perBatch: 10) { store.append(batch, to: id, publisherOffsets: [:]) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(try frames(folder, id).isEmpty, "written before the delay ended")
        // A waiter ends the delay: everything queued goes in one write, as one frame.
        let waited = ContinuousClock.now
        try await store.whenWritten(id, through: 50, on: testLoop).get()
        #expect(ContinuousClock.now - waited < .seconds(5), "the waiter waited for the delay")
        #expect(try frames(folder, id) == [1])
        #expect(try await readAll(store, id).seqs == Array(1...50))
        store.close()
    }

    @Test func enoughQueuedBytesEndTheDelay() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        var configuration = testConfiguration(folder.dataDirectory)
        configuration.coalesceDelay = .seconds(10)
        configuration.coalesceBytes = 4 << 10
        let store = try FileRunStore(configuration: configuration, logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        try await untilWriterIdle(store)
        store.append(makeBatch(firstSeq: 1, count: 1), to: id, publisherOffsets: [:])
        store.append(makeBatch(firstSeq: 2, count: 60), to: id, publisherOffsets: [:])
        // Nobody waits, yet more than coalesceBytes are queued: written long before the 10 s.
        let deadline = ContinuousClock.now + .seconds(10)
        while try frames(folder, id).isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try frames(folder, id) == [1])
        store.close()
    }

    @Test func pendingBatchesContinueWhatIsOnDisk() async throws {
        // The reader alone, over a run whose first records are on disk and later ones still queued.
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID()
        do {
            let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
            store.begin(newRun(id))
            try await appendAndWait(store, id, [makeBatch(firstSeq: 1, count: 100)])
            store.close()
        }
        let layout = StoreLayout(root: folder.dataDirectory)
        var entry = RunEntry(info: newRun(id), isOpen: true, segments: nil)
        entry.pending.append(makeBatch(firstSeq: 101, count: 50))
        entry.pending.append(makeBatch(firstSeq: 161, count: 10))
        let reader = RunReader(shared: StoreShared(runs: [id: entry]), layout: layout, logger: LogRecorder().logger)

        var found: [UInt64] = []
        var gaps: [ClosedRange<UInt64>] = []
        var next: UInt64 = 1
        loop: while true {
            switch try reader.read(id, from: next, through: .max, maxBytes: 4096) {
            case .records(let batch): found += seqs(of: batch); next = batch.lastSeq + 1
            case .gap(let from, let to): gaps.append(from...to); next = to + 1
            case .none: break loop
            }
        }
        #expect(found == Array(1...150) + Array(161...170))
        #expect(gaps == [151...160])
    }

    @Test func whenWrittenWaitsForTheWriterAndNeverForever() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory, fsync: .always), logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        store.append(makeBatch(firstSeq: 1, count: 100), to: id, publisherOffsets: [:])
        try await store.whenWritten(id, through: 100, on: testLoop).get()
        #expect(fileSize(folder.dataDirectory + "/runs/job-1/e1/00000000000000000001.seg") > 100 * 100)
        try await store.whenWritten(id, through: 50, on: testLoop).get()  // already written: at once

        // A seq that never comes: released when the run ends.
        let never = store.whenWritten(id, through: 500, on: testLoop)
        store.end(id, RunEnding(status: .stopped, reason: "worker stopped"))
        try await never.get()

        // And when the store closes.
        let other = runID("job-2")
        store.begin(newRun(other))
        let pending = store.whenWritten(other, through: 10, on: testLoop)
        store.close()
        try await pending.get()
        try await store.whenWritten(other, through: 20, on: testLoop).get()  // closed: at once
    }

    @Test func endIsWrittenAndSeenByTheNextStore() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID("002050.SZ", "2guf0xf4wukt0")
        let later = runID("002050.SZ", "3abc")
        let started = Timestamp(microseconds: 1_764_000_000_000_000)
        let stopped = Timestamp(microseconds: 1_764_000_100_000_000)
        do {
            let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
            store.begin(newRun(id, startedAt: started))
            try await appendAndWait(store, id, batches(1...500, perBatch: 25))
            store.end(id, RunEnding(status: .failed, exitCode: 3, reason: "exited with status 3", at: stopped))
            store.begin(newRun(later, startedAt: stopped))
            try await appendAndWait(store, later, [makeBatch(firstSeq: 1, count: 3)])
            #expect(store.run(id)?.status == .failed)
            store.close()
        }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let info = try #require(store.run(id))
        #expect(info.status == .failed)
        #expect(info.exitCode == 3)
        #expect(info.reason == "exited with status 3")
        #expect(info.startedAt == started && info.stoppedAt == stopped)
        #expect(info.owner == .remote)
        #expect(info.firstSeq == 1 && info.lastSeq == 500 && info.storedBytes > 50_000)
        #expect(store.run(later)?.status == .interrupted, "open when the first store closed")
        #expect(store.run(later)?.lastSeq == 3)
        #expect(store.runs(of: id.worker).map(\.id) == [later, id], "newest first")
        #expect(store.allRuns().count == 2)
        #expect(try await readAll(store, id).seqs == Array(1...500))
        store.close()
    }

    @Test func closeIsIdempotentAndRefusesLaterWork() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let id = runID()
        store.begin(newRun(id))
        store.append(makeBatch(firstSeq: 1, count: 10), to: id, publisherOffsets: [:])
        store.close()
        store.close()
        store.append(makeBatch(firstSeq: 11, count: 10), to: id, publisherOffsets: [:])
        #expect(store.resume(id) == nil)
        await #expect(throws: StoreError.closed) {
            try await store.read(id, from: 1, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        }
        let reopened = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        #expect(try await readAll(reopened, id).seqs == Array(1...10), "close wrote what was queued")
        reopened.close()
    }

    @Test func unusableDirectoriesAreRefusedWithTheirPath() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let file = folder.path + "/not-a-folder"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        #expect {
            try FileRunStore(configuration: testConfiguration(file + "/data"), logger: LogRecorder().logger)
        } throws: { error in
            "\(error)".contains(file)
        }
        let first = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        #expect(throws: StoreError.directoryInUse(path: folder.dataDirectory)) {
            try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        }
        first.close()
        let second = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        second.close()
    }
}
