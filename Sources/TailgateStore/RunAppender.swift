import Logging
import NIOCore
import TailgateCore

/// Appends one run's records to its segments, rolls to a new segment at `segmentBytes`, and keeps its
/// manifest up to date (writer thread only).
///
/// Consecutive batches with contiguous seqs become one frame (up to `frameRecordsLimit` of records, a
/// quarter of a segment at most), and the frames of many batches are written with one `pwrite` (up to
/// `writeChunkBytes`).
final class RunAppender {
    /// A batch to append and the publisher offsets that came with it.
    struct Item {
        var batch: Batch
        var offsets: [String: UInt64]
    }

    /// A sealed segment and the size of its index.
    private struct Sealed {
        var state: SegmentState
        var indexBytes: Int
    }

    /// About the index's spacing, so that a read starts at most about twice that before its seq.
    static let frameRecordsLimit = SparseIndex.spacing
    static let writeChunkBytes = 4 << 20

    let id: RunID
    let runPath: String
    private let configuration: StoreConfiguration
    private let logger: Logger
    /// What the manifest says (seqs and bytes kept current).
    private(set) var info: RunInfo
    /// Every publisher's highest offset in the frames written.
    private(set) var offsets: [String: UInt64]
    private var sealed: [Sealed] = []
    private var current: OpenSegment?
    private var manifestDirty = false

    private init(info: RunInfo, runPath: String, offsets: [String: UInt64], configuration: StoreConfiguration, logger: Logger) {
        self.id = info.id
        self.info = info
        self.runPath = runPath
        self.offsets = offsets
        self.configuration = configuration
        self.logger = logger
    }

    /// The run as readers see it.
    var snapshot: RunSnapshot {
        RunSnapshot(segments: sealed.map(\.state) + (current.map { [$0.state] } ?? []),
                    firstSeq: info.firstSeq, lastSeq: info.lastSeq, storedBytes: info.storedBytes)
    }

    /// Segments that retention may delete (all but the one being written).
    var sealedSegmentCount: Int { sealed.count }

    /// A new run: makes its folder and writes its manifest.
    static func begin(_ info: RunInfo, layout: StoreLayout, configuration: StoreConfiguration, logger: Logger,
                      cycle: WriteCycle) -> RunAppender {
        var info = info
        info.firstSeq = info.lastSeq + 1
        info.storedBytes = 0
        let appender = RunAppender(info: info, runPath: layout.runPath(info.id), offsets: [:], configuration: configuration, logger: logger)
        appender.writeManifest(cycle: cycle)
        return appender
    }

    /// A stored run reopened to continue it: its last segment's torn tail is cut, its publishers'
    /// offsets recovered, and its manifest says `running` again. `known` is what the store knew of it.
    static func reopen(_ id: RunID, known: RunInfo?, layout: StoreLayout, configuration: StoreConfiguration, logger: Logger,
                       cycle: WriteCycle) throws(StoreError) -> RunAppender {
        let runPath = layout.runPath(id)
        var manifest: RunManifest?
        do {
            manifest = try RunManifest.read(runPath: runPath)
        } catch {
            logger.warning("unusable manifest; rebuilding it from the segments", metadata: ["run": "\(id)", "error": "\(error)"])
        }
        let recovered = try RunRecovery.recoverTail(runPath: runPath, logger: logger)
        let offsets = try RunRecovery.publisherOffsets(runPath: runPath, files: recovered.files, lastSeq: recovered.lastSeq ?? 0,
                                                       manifest: manifest)
        var info = manifest?.info ?? known
            ?? RunInfo(id: id, owner: .remote, startedAt: recovered.files.segments.first?.modified ?? .now())
        info.lastSeq = max(recovered.lastSeq ?? 0, manifest?.info.lastSeq ?? 0, known?.lastSeq ?? 0)
        info.status = .running
        info.stoppedAt = nil
        info.exitCode = nil
        info.reason = nil
        let appender = RunAppender(info: info, runPath: runPath, offsets: offsets, configuration: configuration, logger: logger)
        var segments = recovered.files.segments
        if let last = segments.popLast(), let index = recovered.lastIndex {
            appender.current = try OpenSegment.reopen(runPath: runPath, firstSeq: last.firstSeq, size: last.bytes, index: index)
        }
        appender.sealed = segments.map { Sealed(state: SegmentState(firstSeq: $0.firstSeq, bytes: $0.bytes, index: nil), indexBytes: $0.indexBytes) }
        appender.refreshCounters()
        appender.writeManifest(cycle: cycle)
        return appender
    }

    /// Writes `items` (in seq order) as frames; a chunk that cannot be written is dropped and reported.
    func append(_ items: [Item], buffer: inout ByteBuffer, cycle: WriteCycle) {
        let items = inOrder(items, cycle: cycle)
        var next = 0
        var rollNeeded = false
        while next < items.count {
            if rollNeeded {
                roll(cycle: cycle)
                rollNeeded = false
            }
            buffer.clear()
            var starts: [(seq: UInt64, offset: Int)] = []
            var chunkOffsets: [String: UInt64] = [:]
            let chunkStart = next
            let segmentSize = current?.size ?? 0
            while next < items.count {
                let end = frameEnd(items, from: next)
                var frameOffsets: [String: UInt64] = [:]
                for item in items[next..<end] { frameOffsets.merge(item.offsets) { $1 } }
                let batches = items[next..<end].lazy.map(\.batch)
                let length = FrameEncoder.frameLength(of: batches, offsets: frameOffsets)
                let base = segmentSize + buffer.readableBytes
                if base > 0 && base + length > configuration.segmentBytes {
                    rollNeeded = true
                    break
                }
                starts.append((items[next].batch.firstSeq, buffer.readableBytes))
                FrameEncoder.encode(batches, offsets: frameOffsets, into: &buffer)
                chunkOffsets.merge(frameOffsets) { $1 }
                next = end
                if buffer.readableBytes >= Self.writeChunkBytes { break }
            }
            guard !starts.isEmpty else { continue }
            let chunk = items[chunkStart..<next]
            do {
                try write(buffer, starts: starts)
                offsets.merge(chunkOffsets) { $1 }
                info.lastSeq = max(info.lastSeq, chunk.last!.batch.lastSeq)
                cycle.succeeded()
                writeIndex(cycle: cycle)
                if manifestDirty { writeManifest(cycle: cycle) }
            } catch {
                cycle.failed(error, batches: chunk.count)
            }
            for item in chunk { cycle.processed(item.batch, of: id) }
        }
        refreshCounters()
        cycle.touched(id, snapshot)
    }

    /// `items` without the batches whose seqs do not follow the run's (a caller's mistake): seqs only
    /// grow, and a stored record is never overwritten.
    private func inOrder(_ items: [Item], cycle: WriteCycle) -> [Item] {
        var last = info.lastSeq
        var kept: [Item] = []
        kept.reserveCapacity(items.count)
        for item in items {
            if item.batch.firstSeq > last {
                kept.append(item)
                last = item.batch.lastSeq
            } else {
                logger.warning("dropping records whose seqs do not follow the run's", metadata: [
                    "run": "\(id)", "first_seq": "\(item.batch.firstSeq)", "last_seq": "\(last)"])
                cycle.processed(item.batch, of: id)
            }
        }
        return kept
    }

    /// The end (exclusive) of the items that go into one frame starting at `start`.
    private func frameEnd(_ items: [Item], from start: Int) -> Int {
        var end = start + 1
        let limit = min(Self.frameRecordsLimit, configuration.segmentBytes / 4)
        var recordBytes = items[start].batch.recordBytes + items[start].batch.count
        while end < items.count, items[end].batch.firstSeq == items[end - 1].batch.lastSeq + 1 {
            let more = items[end].batch.recordBytes + items[end].batch.count
            guard recordBytes + more <= limit else { break }
            recordBytes += more
            end += 1
        }
        return end
    }

    /// Writes whole frames at the end of the current segment, creating it first if needed.
    private func write(_ buffer: ByteBuffer, starts: [(seq: UInt64, offset: Int)]) throws(StoreError) {
        if current == nil {
            try FileSystem.makeDirectories(runPath)
            current = try OpenSegment.create(runPath: runPath, firstSeq: starts[0].seq)
            if configuration.fsync != .never { try? FileSystem.syncDirectory(runPath) }
        }
        let segment = current!
        let result = buffer.withUnsafeReadableBytes { raw in
            Result { () throws(StoreError) in try segment.append(raw, starts: starts) }
        }
        if case .failure = result, segment.size == 0 {
            // Leave no empty segment behind: its name would claim a first seq that is not stored.
            segment.close()
            try? RunFiles.removeSegment(inRun: runPath, firstSeq: segment.firstSeq)
            current = nil
        }
        try result.get()
    }

    private func writeIndex(cycle: WriteCycle) {
        do {
            try current?.writeIndex()
        } catch {
            cycle.failed(error, batches: 0)
        }
    }

    /// Closes the current segment (the next frame starts a new one) and records the offsets so far in
    /// the manifest, so that resuming only needs to scan the segments after it.
    private func roll(cycle: WriteCycle) {
        seal(cycle: cycle)
        writeManifest(cycle: cycle)
    }

    private func seal(cycle: WriteCycle) {
        guard let segment = current else { return }
        writeIndex(cycle: cycle)
        if configuration.fsync != .never { sync(segment, cycle: cycle) }
        segment.close()
        sealed.append(Sealed(state: SegmentState(firstSeq: segment.firstSeq, bytes: segment.size, index: nil),
                             indexBytes: segment.indexBytes))
        current = nil
    }

    /// Ends the run: seals its segment and writes the ending into its manifest.
    func end(_ ending: RunEnding, cycle: WriteCycle) {
        seal(cycle: cycle)
        info.status = ending.status
        info.exitCode = ending.exitCode
        info.reason = ending.reason
        info.stoppedAt = ending.at
        refreshCounters()
        writeManifest(cycle: cycle)
        cycle.touched(id, snapshot)
        cycle.releaseWaiters(of: id)
    }

    /// Closes the run's files as the store closes; the run stays `running` in its manifest (a later
    /// store reports it interrupted until it is resumed).
    func close(cycle: WriteCycle) {
        if let segment = current {
            writeIndex(cycle: cycle)
            if configuration.fsync != .never { sync(segment, cycle: cycle) }
            segment.close()
        }
        writeManifest(cycle: cycle)
        cycle.releaseWaiters(of: id)
    }

    /// Closes the files without writing anything more: what a crash leaves.
    func abandon() {
        current?.close()
    }

    /// Forces what was written since the last time to disk.
    func syncIfDirty(cycle: WriteCycle) {
        if let segment = current { sync(segment, cycle: cycle) }
    }

    private func sync(_ segment: OpenSegment, cycle: WriteCycle) {
        do {
            try segment.syncIfDirty()
        } catch {
            cycle.failed(error, batches: 0)
        }
    }

    /// Deletes the oldest sealed segment (retention); the bytes freed, or `nil` when there is none or
    /// it cannot be deleted.
    func removeOldestSegment() -> Int? {
        guard let oldest = sealed.first else { return nil }
        do {
            try RunFiles.removeSegment(inRun: runPath, firstSeq: oldest.state.firstSeq)
        } catch {
            logger.error("cannot delete a segment for retention", metadata: ["run": "\(id)", "error": "\(error)"])
            return nil
        }
        sealed.removeFirst()
        refreshCounters()
        return oldest.state.bytes + oldest.indexBytes
    }

    private func refreshCounters() {
        info.firstSeq = sealed.first?.state.firstSeq ?? current?.firstSeq ?? info.lastSeq + 1
        info.storedBytes = sealed.reduce(0) { $0 + $1.state.bytes + $1.indexBytes } + (current.map { $0.size + $0.indexBytes } ?? 0)
    }

    /// Whether the last manifest write failed.
    var hasUnwrittenManifest: Bool { manifestDirty }

    /// Tries the manifest again (see `hasUnwrittenManifest`).
    func retryManifest(cycle: WriteCycle) {
        writeManifest(cycle: cycle)
    }

    /// Writes the manifest; on failure it is written again after the next successful write.
    private func writeManifest(cycle: WriteCycle) {
        let manifest = RunManifest(info: info, publisherOffsets: offsets, offsetsThroughSeq: info.lastSeq)
        do {
            try FileSystem.makeDirectories(runPath)
            // Forced to disk only under `always`: many runs begin at once when a fleet starts, and a
            // manifest lost to a machine crash is rebuilt from the segments (see `HistoryScan`).
            try manifest.write(runPath: runPath, sync: configuration.fsync == .always)
            manifestDirty = false
            cycle.succeeded()
        } catch {
            manifestDirty = true
            cycle.failed(error, batches: 0)
        }
    }
}
