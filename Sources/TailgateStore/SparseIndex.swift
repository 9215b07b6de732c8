/// The sparse index of one segment (`<first seq>.idx`): where some frames start, so that a read seeks
/// close to its seq and scans forward from there instead of from the segment's start.
///
/// The file is a sequence of 16-byte entries, each the first seq of a frame (UInt64, little-endian) and
/// the frame's offset in the segment (UInt64, little-endian): the segment's first frame, then the first
/// frame starting at least `spacing` bytes after the previous entry. Entries are appended as frames are
/// written; an index that is missing or fails the checks of `load` is rebuilt from its segment.
struct SparseIndex: Sendable, Equatable {
    /// One indexed frame.
    struct Entry: Sendable, Equatable {
        var seq: UInt64
        var offset: Int
    }

    static let entrySize = 16
    /// The most segment bytes between two entries (about; an entry is always at a frame's start).
    static let spacing = 64 << 10

    private(set) var entries: [Entry] = []

    init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// Adds the frame at `offset` if it is the first or far enough from the last entry; says whether it did.
    @discardableResult
    mutating func noteFrame(seq: UInt64, offset: Int) -> Bool {
        if let last = entries.last, offset - last.offset < Self.spacing { return false }
        entries.append(Entry(seq: seq, offset: offset))
        return true
    }

    /// The last entry whose seq is at most `seq`: where a scan for `seq` starts.
    func entry(atOrBefore seq: UInt64) -> Entry? {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].seq <= seq { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : entries[low - 1]
    }

    /// The index without its entries from position `count` on.
    func prefix(_ count: Int) -> SparseIndex { SparseIndex(entries: Array(entries.prefix(count))) }

    /// The file's bytes for entries `from...`.
    func encoded(from first: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity((entries.count - first) * Self.entrySize)
        for entry in entries[first...] {
            withUnsafeBytes(of: entry.seq.littleEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(entry.offset).littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    /// Parses an index file for a segment of `segmentSize` bytes; `nil` when it is damaged (a partial
    /// entry, seqs or offsets not increasing, the first entry not at offset 0, an offset past the end).
    static func decode(_ bytes: [UInt8], segmentSize: Int) -> SparseIndex? {
        guard bytes.count % entrySize == 0 else { return nil }
        var entries: [Entry] = []
        entries.reserveCapacity(bytes.count / entrySize)
        bytes.withUnsafeBytes { raw in
            for at in stride(from: 0, to: raw.count, by: entrySize) {
                let seq = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
                let offset = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))
                entries.append(Entry(seq: seq, offset: Int(truncatingIfNeeded: offset)))
            }
        }
        for (position, entry) in entries.enumerated() {
            guard entry.offset >= 0, entry.offset < segmentSize, entry.seq >= 1 else { return nil }
            if position == 0 {
                guard entry.offset == 0 else { return nil }
            } else {
                let previous = entries[position - 1]
                guard entry.seq > previous.seq, entry.offset > previous.offset else { return nil }
            }
        }
        return SparseIndex(entries: entries)
    }

    /// Reads the index at `path` for a segment of `segmentSize` bytes; `nil` when missing or damaged.
    static func load(_ path: String, segmentSize: Int) -> SparseIndex? {
        guard let bytes = try? FileSystem.readAll(path), !bytes.isEmpty || segmentSize == 0 else { return nil }
        return decode(bytes, segmentSize: segmentSize)
    }

    /// Builds the index of a segment by scanning its frames up to `limit`; also says where its valid
    /// frames end.
    static func rebuild(_ segment: DiskFile, limit: Int) throws(StoreError) -> (index: SparseIndex, validEnd: Int) {
        var index = SparseIndex()
        let scanner = FrameScanner(file: segment, from: 0, to: limit)
        while let frame = try scanner.next() {
            index.noteFrame(seq: frame.header.firstSeq, offset: frame.offset)
        }
        return (index, scanner.validEnd)
    }
}
