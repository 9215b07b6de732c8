/// The segment a run is appending to, and its index, both open for writing (writer thread only).
final class OpenSegment {
    let firstSeq: UInt64
    let file: DiskFile
    let indexFile: DiskFile
    /// Bytes of whole frames written: the next frame goes here.
    private(set) var size: Int
    private(set) var index: SparseIndex
    /// Entries of `index` in the index file; the others are written with the next frames.
    private var indexEntriesWritten: Int
    /// Written since the last fsync.
    private var dirty = false

    private init(firstSeq: UInt64, file: DiskFile, indexFile: DiskFile, size: Int, index: SparseIndex) {
        self.firstSeq = firstSeq
        self.file = file
        self.indexFile = indexFile
        self.size = size
        self.index = index
        self.indexEntriesWritten = index.entries.count
    }

    /// Bytes of the index file.
    var indexBytes: Int { indexEntriesWritten * SparseIndex.entrySize }

    /// The segment as readers see it.
    var state: SegmentState { SegmentState(firstSeq: firstSeq, bytes: size, index: index) }

    /// Creates the segment of a run whose first frame starts at `firstSeq`, and its index (emptying
    /// leftovers of an earlier attempt).
    static func create(runPath: String, firstSeq: UInt64) throws(StoreError) -> OpenSegment {
        let file = try DiskFile.create(StoreLayout.segmentPath(inRun: runPath, firstSeq: firstSeq))
        let indexFile = try DiskFile.create(StoreLayout.indexPath(inRun: runPath, firstSeq: firstSeq))
        return OpenSegment(firstSeq: firstSeq, file: file, indexFile: indexFile, size: 0, index: SparseIndex())
    }

    /// Opens a recovered segment to continue it: `size` bytes of whole frames, `index` as on disk.
    static func reopen(runPath: String, firstSeq: UInt64, size: Int, index: SparseIndex) throws(StoreError) -> OpenSegment {
        let file = try DiskFile.openForUpdate(StoreLayout.segmentPath(inRun: runPath, firstSeq: firstSeq))
        let indexFile = try DiskFile.openForUpdate(StoreLayout.indexPath(inRun: runPath, firstSeq: firstSeq))
        return OpenSegment(firstSeq: firstSeq, file: file, indexFile: indexFile, size: size, index: index)
    }

    /// Writes `frames` (whole frames, starting at the segment's end) with one `pwrite`; `starts` are the
    /// first seq and offset within `frames` of each. On an error the segment is cut back to its previous
    /// end, so that it still ends with a whole frame.
    func append(_ frames: UnsafeRawBufferPointer, starts: [(seq: UInt64, offset: Int)]) throws(StoreError) {
        do {
            try file.write(frames, at: size)
        } catch {
            try? file.truncate(to: size)
            throw error
        }
        for start in starts { index.noteFrame(seq: start.seq, offset: size + start.offset) }
        size += frames.count
        dirty = true
    }

    /// Writes the index entries not yet in the index file. A failure leaves them for the next call.
    func writeIndex() throws(StoreError) {
        guard indexEntriesWritten < index.entries.count else { return }
        let bytes = index.encoded(from: indexEntriesWritten)
        try indexFile.write(bytes, at: indexBytes)
        indexEntriesWritten = index.entries.count
    }

    /// Forces the segment and its index to disk if written since the last time.
    func syncIfDirty() throws(StoreError) {
        guard dirty else { return }
        try file.sync()
        try indexFile.sync()
        dirty = false
    }

    /// Closes both files.
    func close() {
        file.close()
        indexFile.close()
    }
}
