import Foundation
import NIOCore
import TailgateCore
import Testing
@testable import TailgateStore

@Suite("FileRunStore: restarts and crashes")
struct RecoveryTests {
    /// Damage done to the end of a run's last segment after a crash.
    enum TailDamage: String, CaseIterable, CustomTestStringConvertible {
        case garbageAppended, headerCut, frameCut, checksumBroken

        var testDescription: String { rawValue }
    }

    /// Writes `frames` frames of 10 records (one write each), then stops like a crash.
    private func writeThenCrash(_ folder: TemporaryFolder, _ id: RunID, frames: Int,
                                offsets: (Int) -> [String: UInt64] = { _ in [:] }) async throws {
        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        store.begin(newRun(id))
        for frame in 0..<frames {
            try await appendAndWait(store, id, [makeBatch(firstSeq: UInt64(frame * 10 + 1), count: 10)], offsets: offsets(frame))
        }
        store.stop(abandon: true)
    }

    @Test(arguments: TailDamage.allCases)
    func tornTailIsCutAndTheRunContinues(damage: TailDamage) async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID()
        try await writeThenCrash(folder, id, frames: 10)
        let segment = folder.dataDirectory + "/runs/job-1/e1/00000000000000000001.seg"
        let intact = try #require(FileManager.default.contents(atPath: segment))
        var damaged = intact
        switch damage {
        case .garbageAppended: damaged.append(contentsOf: [0x54, 0x47, 0x46, 0x31, 1, 2, 3, 4, 5, 6, 7])
        case .headerCut: damaged.append(contentsOf: intact.prefix(FrameHeader.size - 5))
        case .frameCut: damaged.removeLast(7)
        case .checksumBroken: damaged[damaged.count - 20] ^= 0x01
        }
        try damaged.write(to: URL(fileURLWithPath: segment))
        let expectedLast: UInt64 = (damage == .frameCut || damage == .checksumBroken) ? 90 : 100

        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let info = try #require(store.run(id))
        #expect(info.status == .interrupted)
        #expect(info.lastSeq == expectedLast)
        #expect(info.stoppedAt != nil)
        #expect(fileSize(segment) < damaged.count, "the torn frame is cut off")
        #expect(try await readAll(store, id).seqs == Array(1...expectedLast))

        let resumed = try #require(store.resume(id))
        #expect(resumed.info.status == .running && resumed.info.lastSeq == expectedLast)
        #expect(store.run(id)?.status == .running)
        try await appendAndWait(store, id, [makeBatch(firstSeq: expectedLast + 1, count: 10)])
        #expect(try await readAll(store, id).seqs == Array(1...(expectedLast + 10)))
        store.close()

        let reopened = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        #expect(reopened.run(id)?.lastSeq == expectedLast + 10)
        #expect(reopened.run(id)?.status == .interrupted)
        reopened.close()
    }

    /// Damage done to a segment's sparse index.
    enum IndexDamage: String, CaseIterable, CustomTestStringConvertible {
        case deleted, garbage, partialEntry, entryOffByOne

        var testDescription: String { rawValue }
    }

    @Test(arguments: IndexDamage.allCases)
    func damagedIndexIsRebuilt(damage: IndexDamage) async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID()
        let configuration = testConfiguration(folder.dataDirectory, segmentBytes: 1 << 20)
        do {
            let store = try FileRunStore(configuration: configuration, logger: LogRecorder().logger)
            store.begin(newRun(id))
            for batch in batches(1...5000, perBatch: 20) { try await appendAndWait(store, id, [batch]) }
            store.end(id, RunEnding(status: .succeeded, exitCode: 0, reason: "exited with status 0"))
            store.close()
        }
        let path = folder.dataDirectory + "/runs/job-1/e1/00000000000000000001.idx"
        let original = try #require(FileManager.default.contents(atPath: path))
        let entries = SparseIndex.decode(Array(original), segmentSize: .max)!.entries
        #expect(entries.count > 8)
        let target = entries[entries.count / 2].seq + 1
        switch damage {
        case .deleted: try FileManager.default.removeItem(atPath: path)
        case .garbage: try Data("not an index at all".utf8).write(to: URL(fileURLWithPath: path))
        case .partialEntry: try original.dropLast(5).write(to: URL(fileURLWithPath: path))
        case .entryOffByOne:
            var bytes = original
            bytes[(entries.count / 2) * 16 + 8] &+= 1  // its offset, low byte: no longer a frame's start
            try bytes.write(to: URL(fileURLWithPath: path))
        }

        let store = try FileRunStore(configuration: configuration, logger: LogRecorder().logger)
        let chunk = try await store.read(id, from: target, through: target + 49, maxBytes: 1 << 20, on: testLoop).get()
        guard case .records(let batch) = chunk else { Issue.record("no records: \(chunk)"); return }
        #expect(seqs(of: batch) == Array(target...(target + 49)))
        #expect(FileManager.default.contents(atPath: path) == original, "rebuilt as the writer wrote it")
        #expect(try await readAll(store, id).seqs == Array(1...5000))
        store.close()
    }

    @Test(arguments: [true, false])
    func missingManifestIsRebuiltFromTheSegments(emptied: Bool) async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID("w.1:a", "e9")
        try await writeThenCrash(folder, id, frames: 5, offsets: { ["pub": UInt64($0 + 1)] })
        let manifest = folder.dataDirectory + "/runs/w.1:a/e9/manifest.json"
        if emptied {
            try Data().write(to: URL(fileURLWithPath: manifest))  // a rename that outlived its content
        } else {
            try FileManager.default.removeItem(atPath: manifest)
        }

        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let info = try #require(store.run(id))
        #expect(info.status == .interrupted)
        #expect(info.firstSeq == 1 && info.lastSeq == 50)
        #expect(FileManager.default.fileExists(atPath: manifest))
        #expect(try await readAll(store, id).seqs == Array(1...50))
        #expect(store.resume(id)?.publisherOffsets == ["pub": 5])
        store.close()
    }

    /// How the store that wrote the offsets stopped.
    enum Stop: String, CaseIterable, CustomTestStringConvertible {
        case closed, crashed, crashedWithTornFrame

        var testDescription: String { rawValue }
    }

    @Test(arguments: Stop.allCases)
    func publisherOffsetsSurviveARestart(stop: Stop) async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let id = runID()
        func offsets(_ batch: Int) -> [String: UInt64] {
            var offsets: [String: UInt64] = [:]
            if batch % 2 == 0 { offsets["pub-a"] = UInt64(batch * 50) }
            if batch % 3 == 0 { offsets["pub-b"] = UInt64(batch) }
            if batch == 29 { offsets["pub-c"] = 7 }
            return offsets
        }
        let all = batches(1...1500, perBatch: 50)
        do {
            let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
            store.begin(newRun(id))
            for (number, batch) in all.enumerated() { try await appendAndWait(store, id, [batch], offsets: offsets(number)) }
            if stop == .closed { store.close() } else { store.stop(abandon: true) }
        }
        let segments = fileNames(folder.dataDirectory + "/runs/job-1/e1").filter { $0.hasSuffix(".seg") }
        #expect(segments.count >= 4, "offsets of earlier segments come from the manifest")
        var written = all.count
        if stop == .crashedWithTornFrame {
            let last = folder.dataDirectory + "/runs/job-1/e1/" + segments.last!
            let handle = try #require(FileHandle(forUpdatingAtPath: last))
            try handle.truncate(atOffset: UInt64(fileSize(last) - 3))
            try handle.close()
            written -= 1
        }
        var expected: [String: UInt64] = [:]
        for number in 0..<written { expected.merge(offsets(number)) { $1 } }

        let store = try FileRunStore(configuration: testConfiguration(folder.dataDirectory), logger: LogRecorder().logger)
        let resumed = try #require(store.resume(id))
        #expect(resumed.info.lastSeq == UInt64(written * 50))
        #expect(resumed.publisherOffsets == expected)
        store.close()
    }

    @Test func startReadsManifestsOnly() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let configuration = testConfiguration(folder.dataDirectory)
        let workers = (0..<20).map { "w-\($0)" }
        let epochs = (0..<10).map { "e\($0)" }
        do {
            let store = try FileRunStore(configuration: configuration, logger: LogRecorder().logger)
            for worker in workers {
                for epoch in epochs {
                    let id = runID(worker, epoch)
                    store.begin(newRun(id))
                    store.append(makeBatch(firstSeq: 1, count: 5), to: id, publisherOffsets: [:])
                    store.end(id, RunEnding(status: .stopped, reason: "worker stopped"))
                }
            }
            store.close()
        }
        let runs = folder.dataDirectory + "/runs"
        // A finished run whose segment cannot be read; a run whose manifest is garbage; things that are not runs.
        let unreadable = runs + "/w-3/e7/00000000000000000001.seg"
        try FileManager.default.removeItem(atPath: unreadable)
        try FileManager.default.createDirectory(atPath: unreadable, withIntermediateDirectories: false)
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: runs + "/w-4/e2/manifest.json"))
        try FileManager.default.createDirectory(atPath: runs + "/not a worker!/e1", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: runs + "/w-1/NOT-AN-EPOCH", withIntermediateDirectories: true)
        try Data("stray".utf8).write(to: URL(fileURLWithPath: runs + "/stray.txt"))

        let log = LogRecorder()
        let store = try FileRunStore(configuration: configuration, logger: log.logger)
        #expect(store.allRuns().count == 199)
        #expect(store.run(runID("w-4", "e2")) == nil)
        #expect(log.messages(at: .error).count == 1, "the garbage manifest is logged")
        let damaged = try #require(store.run(runID("w-3", "e7")))
        #expect(damaged.status == .stopped && damaged.lastSeq == 5, "known from its manifest alone")

        // Only reading or continuing the damaged run meets the problem.
        await #expect(throws: StoreError.self) {
            try await store.read(runID("w-3", "e7"), from: 1, through: .max, maxBytes: 1 << 20, on: testLoop).get()
        }
        #expect(store.resume(runID("w-3", "e7")) == nil)
        #expect(try await readAll(store, runID("w-3", "e6")).seqs == Array(1...5))
        #expect(store.health().state == "ok")
        store.close()
    }
}
