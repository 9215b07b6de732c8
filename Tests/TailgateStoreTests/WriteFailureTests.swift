#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import TailgateCore
import Testing
@testable import TailgateStore

/// A disk that can be made full and freed again: a small tmpfs (when this process may mount, as root in
/// a container usually can), otherwise a file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored).
final class FillableDisk {
    /// Where the store's directory goes.
    let path: String
    private let mounted: Bool
    private let filler: String
    private var savedLimit = rlimit()

    /// Segment size for the store on this disk: beyond the file size limit when there is one.
    var segmentBytes: Int { mounted ? 64 << 10 : 32 << 20 }

    init(in folder: TemporaryFolder) {
        let path = folder.path + "/disk"
        mkdir(path, 0o755)
        self.path = path
        filler = path + "/filler"
        mounted = "size=512k".withCString { mount("tmpfs", path, "tmpfs", 0, $0) } == 0
        getrlimit(fileSizeLimit, &savedLimit)
    }

    /// Unmounts the tmpfs, or lifts the file size limit.
    func release() {
        if mounted {
            umount2(path, Int32(MNT_DETACH))
        } else {
            setrlimit(fileSizeLimit, &savedLimit)
        }
    }

    /// Leaves little room: about 100 KiB on the tmpfs; files limited to 4 MiB otherwise.
    func fill() throws {
        if mounted {
            var free = statvfs()
            statvfs(path, &free)
            let room = Int(free.f_bavail) * Int(free.f_frsize)
            try Data(count: max(0, room - (100 << 10))).write(to: URL(fileURLWithPath: filler))
        } else {
            signal(SIGXFSZ, SIG_IGN)
            var limit = savedLimit
            limit.rlim_cur = 4 << 20
            setrlimit(fileSizeLimit, &limit)
        }
    }

    /// Makes room again.
    func free() throws {
        if mounted {
            try FileManager.default.removeItem(atPath: filler)
        } else {
            setrlimit(fileSizeLimit, &savedLimit)
        }
    }
}

/// `RLIMIT_FSIZE` as the resource type `getrlimit` takes on Linux.
private let fileSizeLimit = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)

@Suite("FileRunStore: a failing disk")
struct WriteFailureTests {
    @Test func aFullDiskFailsTheStoreWhichWritesAgainOnceThereIsRoom() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let disk = FillableDisk(in: folder)
        defer { disk.release() }
        let directory = disk.path + "/data"
        let configuration = testConfiguration(directory, fsync: .always, segmentBytes: disk.segmentBytes)
        let log = LogRecorder()
        let store = try FileRunStore(configuration: configuration, logger: log.logger)
        let id = runID()
        store.begin(newRun(id))
        try disk.fill()

        // Publish until the disk is full, and a few batches more.
        var next: UInt64 = 1
        var failedAt: UInt64?
        while next < 100_000, failedAt.map({ next < $0 + 500 }) ?? true {
            store.append(makeBatch(firstSeq: next, count: 50, messageBytes: 150), to: id, publisherOffsets: [:])
            store.flush()
            if failedAt == nil, store.health().state == "failed" {
                failedAt = next
                // A failed store does not make publishers wait.
                try await store.whenWritten(id, through: next + 1000, on: testLoop).get()
            }
            next += 50
        }
        let lostFrom = try #require(failedAt, "the disk never filled")
        let health = store.health()
        #expect(health.state == "failed")
        let afterFull = (next - lostFrom) / 50  // batches appended from the first failure on
        #expect(health.failedWrites >= afterFull - 1 && health.failedWrites <= afterFull,
                "every batch after the disk filled was dropped: \(health.failedWrites) of \(afterFull)")
        #expect(health.lastError?.contains(directory) == true, "the error names the file: \(health.lastError ?? "")")
        #expect(log.messages(at: .error).count == 1, "logged once, not once per batch")

        // What was written is still read; what was not is not there.
        let before = try await readAll(store, id)
        let stored = try #require(before.seqs.last)
        #expect(before.seqs == Array(1...stored) && before.gaps.isEmpty)
        #expect(stored >= 50 && stored < lostFrom + 50)

        try disk.free()
        store.append(makeBatch(firstSeq: next, count: 50), to: id, publisherOffsets: [:])
        store.flush()
        #expect(store.health().state == "ok")
        #expect(store.health().lastError == nil)
        #expect(log.messages(at: .notice).count == 1, "the recovery is logged")
        let after = try await readAll(store, id)
        #expect(after.seqs == Array(1...stored) + Array(next...(next + 49)))
        #expect(after.gaps == [(stored + 1)...(next - 1)], "records lost to the full disk are a gap")
        store.close()

        // Cut-off frames left the files clean: a new store reads the same without cutting anything.
        let reopenedLog = LogRecorder()
        let reopened = try FileRunStore(configuration: configuration, logger: reopenedLog.logger)
        #expect(try await readAll(reopened, id) == after)
        #expect(reopenedLog.messages(at: .warning).isEmpty, "\(reopenedLog.messages(at: .warning))")
        reopened.close()
    }
}

@Suite("FileRunStore: a disk slower than the publishers")
struct WriteQueueTests {
    @Test func aFullWriteQueueDropsForTheDiskAndRecovers() async throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        var configuration = testConfiguration(folder.dataDirectory)
        configuration.writeQueueBytes = 1 << 20
        let log = LogRecorder()
        let store = try FileRunStore(configuration: configuration, logger: log.logger)
        let id = runID()
        store.begin(newRun(id))
        try await appendAndWait(store, id, [makeBatch(firstSeq: 1, count: 10)])

        // As if the writer had fallen 1 MiB behind.
        store.shared.state.withLock { $0.queuedBytes += 1 << 20 }
        store.append(makeBatch(firstSeq: 11, count: 10), to: id, publisherOffsets: [:])
        #expect(store.health().state == "failed")
        #expect(store.health().failedWrites == 1)
        #expect(store.health().lastError?.contains("does not keep up") == true)
        try await store.whenWritten(id, through: 20, on: testLoop).get()  // at once: nothing better can be promised
        #expect(store.run(id)?.lastSeq == 10, "the batch was not queued")

        store.shared.state.withLock { $0.queuedBytes -= 1 << 20 }
        store.append(makeBatch(firstSeq: 21, count: 10), to: id, publisherOffsets: [:])
        store.flush()
        #expect(store.health().state == "ok")
        #expect(try await readAll(store, id) == ReadOutcome(seqs: Array(1...10) + Array(21...30), gaps: [11...20], chunks: 2))
        #expect(log.messages(at: .error).count == 1)
        store.close()
    }
}
