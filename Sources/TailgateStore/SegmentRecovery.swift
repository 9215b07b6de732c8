import Logging

/// Brings the last segment of a run that was open when the gateway stopped (or crashed) back to a
/// clean state, and reads what resuming needs from segments.
enum SegmentRecovery {
    /// What the recovery of one segment found.
    struct Summary {
        /// The seq of the last whole record; `nil` when no valid frame is left.
        var lastSeq: UInt64?
        /// Where the valid frames end: the segment's size after recovery.
        var validEnd: Int
        /// The segment's index, complete and valid.
        var index: SparseIndex
        /// Bytes of a torn tail that were cut off.
        var cutBytes: Int
    }

    /// Makes the segment end with a whole, valid frame, cutting off a torn tail (a short header, a short
    /// frame, a checksum mismatch), and makes its index complete, rebuilding it when missing or damaged.
    ///
    /// Only the part after the index's last entry is scanned when the index is sound (at most about
    /// `SparseIndex.spacing` bytes and one frame), the whole segment otherwise.
    static func recover(segmentPath: String, indexPath: String, logger: Logger) throws(StoreError) -> Summary {
        let file = try DiskFile.openForUpdate(segmentPath)
        let size = try file.size()
        let loaded = SparseIndex.load(indexPath, segmentSize: size)
        var index = SparseIndex()
        var start = 0
        var indexChanged = true
        if let loaded, let position = try lastUsableEntry(of: loaded, in: file) {
            index = loaded.prefix(position + 1)
            start = loaded.entries[position].offset
            indexChanged = position + 1 < loaded.entries.count
        }
        let entriesBefore = index.entries.count
        var summary = try scan(file, from: start, size: size, index: &index)
        if summary.lastSeq == nil && start > 0 {
            // The frame the index pointed at is itself damaged: its predecessors' last seq is unknown
            // from here, so scan the segment from its start.
            index = SparseIndex()
            indexChanged = true
            summary = try scan(file, from: 0, size: size, index: &index)
        }
        let kept = index.entries.prefix { $0.offset < summary.validEnd }.count
        if kept < index.entries.count || index.entries.count != entriesBefore { indexChanged = true }
        index = index.prefix(kept)
        summary.index = index
        if summary.validEnd < size {
            try file.truncate(to: summary.validEnd)
            summary.cutBytes = size - summary.validEnd
            logger.warning("cut a torn tail off a segment", metadata: [
                "segment": "\(segmentPath)", "bytes": "\(summary.cutBytes)", "valid_bytes": "\(summary.validEnd)"])
        }
        if indexChanged || summary.validEnd < size {
            try FileSystem.replace(indexPath, with: index.encoded(), sync: false)
        }
        return summary
    }

    /// Merges into `offsets` the publisher offsets of every frame of the segment whose last seq is
    /// after `after` (later frames win).
    static func collectOffsets(segmentPath: String, limit: Int, after: UInt64,
                               into offsets: inout [String: UInt64]) throws(StoreError) {
        let file = try DiskFile.openForReading(segmentPath)
        let scanner = FrameScanner(file: file, from: 0, to: min(limit, try file.size()))
        while let frame = try scanner.next() {
            if frame.header.offsetsLength > 0, frame.header.lastSeq > after {
                PublisherOffsetsCoding.read(frame.offsets, into: &offsets)
            }
        }
    }

    /// The position of the last index entry that points at a frame header with the entry's seq.
    private static func lastUsableEntry(of index: SparseIndex, in file: DiskFile) throws(StoreError) -> Int? {
        var header = [UInt8](repeating: 0, count: FrameHeader.size)
        for position in index.entries.indices.reversed() {
            let entry = index.entries[position]
            let read = try file.read(into: &header, at: entry.offset)
            guard read == FrameHeader.size else { continue }
            let parsed = header.withUnsafeBytes { FrameHeader(at: $0.baseAddress!) }
            if parsed?.firstSeq == entry.seq { return position }
        }
        return nil
    }

    /// Scans the frames from `start`, adding index entries; `index` must end at or before `start`.
    private static func scan(_ file: DiskFile, from start: Int, size: Int, index: inout SparseIndex) throws(StoreError) -> Summary {
        let scanner = FrameScanner(file: file, from: start, to: size)
        var lastSeq: UInt64?
        while let frame = try scanner.next() {
            index.noteFrame(seq: frame.header.firstSeq, offset: frame.offset)
            lastSeq = frame.header.lastSeq
        }
        return Summary(lastSeq: lastSeq, validEnd: scanner.validEnd, index: index, cutBytes: 0)
    }
}
