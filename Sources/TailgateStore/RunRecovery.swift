import Logging
import TailgateCore

/// Recovers a run whose writing stopped uncleanly: what its last segments really hold, and where its
/// publishers stand. Only the last segment is scanned (and, for the offsets, the segments written since
/// the manifest's offsets were taken: normally the last one alone).
enum RunRecovery {
    /// A run's folder after recovery.
    struct Result {
        /// The segments left (an empty last segment is deleted), with their sizes after recovery.
        var files: RunFiles
        /// The last seq stored; `nil` when no record is.
        var lastSeq: UInt64?
        /// The index of the last segment, complete.
        var lastIndex: SparseIndex?
        /// When the run was last written to (the last segment's modification time before recovery).
        var lastModified: Timestamp?
    }

    /// Lists the run's folder and cuts a torn tail off its last segment (see `SegmentRecovery`);
    /// segments left with no valid frame are deleted.
    static func recoverTail(runPath: String, logger: Logger) throws(StoreError) -> Result {
        var files = try RunFiles.list(runPath)
        let lastModified = files.segments.last?.modified
        while let last = files.segments.last {
            let summary = try SegmentRecovery.recover(
                segmentPath: StoreLayout.segmentPath(inRun: runPath, firstSeq: last.firstSeq),
                indexPath: StoreLayout.indexPath(inRun: runPath, firstSeq: last.firstSeq), logger: logger)
            guard let lastSeq = summary.lastSeq else {
                try RunFiles.removeSegment(inRun: runPath, firstSeq: last.firstSeq)
                files.segments.removeLast()
                continue
            }
            files.segments[files.segments.count - 1].bytes = summary.validEnd
            files.segments[files.segments.count - 1].indexBytes = summary.index.entries.count * SparseIndex.entrySize
            return Result(files: files, lastSeq: lastSeq, lastIndex: summary.index, lastModified: lastModified)
        }
        return Result(files: files, lastSeq: nil, lastIndex: nil, lastModified: lastModified)
    }

    /// Each publisher's last offset in the run: the manifest's, updated by the frames written after
    /// the seq it accounts for.
    static func publisherOffsets(runPath: String, files: RunFiles, lastSeq: UInt64, manifest: RunManifest?) throws(StoreError) -> [String: UInt64] {
        var offsets = manifest?.publisherOffsets ?? [:]
        let after = manifest?.offsetsThroughSeq ?? 0
        guard lastSeq > after, !files.segments.isEmpty else { return offsets }
        let start = files.segments.lastIndex { $0.firstSeq <= after + 1 } ?? 0
        for segment in files.segments[start...] {
            try SegmentRecovery.collectOffsets(segmentPath: StoreLayout.segmentPath(inRun: runPath, firstSeq: segment.firstSeq),
                                               limit: segment.bytes, after: after, into: &offsets)
        }
        return offsets
    }
}
