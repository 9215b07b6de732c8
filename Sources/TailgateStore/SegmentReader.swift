#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import TailgateCore

/// Reads records from a run's segments: picks the segment holding a seq, seeks with its sparse index
/// (binary search), and scans forward in large chunks, checking checksums, copying the frames' NDJSON
/// as it is (no JSON is parsed) into one buffer for `Batch.fromLines`.
struct SegmentReader {
    /// What the segments hold at the asked seq.
    enum Result {
        /// Records from the asked seq on.
        case records(Batch)
        /// The asked seq is not stored; this is the next seq that is.
        case next(UInt64)
        /// Nothing at or after the asked seq is stored on disk.
        case nothing
    }

    private enum Scan {
        case records(Batch)
        case next(UInt64)
        case endOfSegment
        case indexMismatch
    }

    let runPath: String
    let logger: Logger
    /// Called with an index that was loaded from its file or rebuilt, so that later reads reuse it.
    let remember: (_ segmentFirstSeq: UInt64, _ index: SparseIndex) -> Void

    /// Records from `seq` on, no further than `bound`, about `maxBytes` (at least one record).
    func read(_ segments: [SegmentState], from seq: UInt64, through bound: UInt64, maxBytes: Int) throws(StoreError) -> Result {
        guard let position = segments.lastIndex(where: { $0.firstSeq <= seq }) else {
            return segments.first.map { .next($0.firstSeq) } ?? .nothing
        }
        let following: Result = position + 1 < segments.count ? .next(segments[position + 1].firstSeq) : .nothing
        let segment = segments[position]
        let path = StoreLayout.segmentPath(inRun: runPath, firstSeq: segment.firstSeq)
        let file: DiskFile
        do {
            file = try DiskFile.openForReading(path)
        } catch where error.isNotFound {
            return following  // deleted by retention since the read began
        }
        let size = min(segment.bytes, try file.size())
        var index = try self.index(of: segment, in: file, size: size)
        var scan = try collect(file, path: path, size: size, index: index, from: seq, through: bound, maxBytes: maxBytes)
        if case .indexMismatch = scan {
            logger.warning("a segment index does not match its segment; rebuilding it", metadata: ["segment": "\(path)"])
            index = try rebuildIndex(of: segment, in: file, size: size)
            scan = try collect(file, path: path, size: size, index: index, from: seq, through: bound, maxBytes: maxBytes)
        }
        switch scan {
        case .records(let batch): return .records(batch)
        case .next(let next): return .next(next)
        case .endOfSegment, .indexMismatch: return following
        }
    }

    /// The segment's index: known, loaded from its file, or rebuilt when missing or damaged.
    private func index(of segment: SegmentState, in file: DiskFile, size: Int) throws(StoreError) -> SparseIndex {
        if let index = segment.index { return index }
        if let loaded = SparseIndex.load(StoreLayout.indexPath(inRun: runPath, firstSeq: segment.firstSeq), segmentSize: size) {
            remember(segment.firstSeq, loaded)
            return loaded
        }
        logger.notice("rebuilding a missing or damaged segment index", metadata: [
            "segment": "\(StoreLayout.segmentPath(inRun: runPath, firstSeq: segment.firstSeq))"])
        return try rebuildIndex(of: segment, in: file, size: size)
    }

    private func rebuildIndex(of segment: SegmentState, in file: DiskFile, size: Int) throws(StoreError) -> SparseIndex {
        let rebuilt = try SparseIndex.rebuild(file, limit: size).index
        let path = StoreLayout.indexPath(inRun: runPath, firstSeq: segment.firstSeq)
        do {
            try FileSystem.replace(path, with: rebuilt.encoded(), sync: false)
        } catch {
            logger.warning("cannot write a rebuilt segment index", metadata: ["index": "\(path)", "error": "\(error)"])
        }
        remember(segment.firstSeq, rebuilt)
        return rebuilt
    }

    /// Scans the segment from the index entry before `seq`, gathering records while they are
    /// contiguous, within `bound` and about `maxBytes`.
    private func collect(_ file: DiskFile, path: String, size: Int, index: SparseIndex, from seq: UInt64, through bound: UInt64,
                         maxBytes: Int) throws(StoreError) -> Scan {
        let entry = index.entry(atOrBefore: seq)
        let chunkSize = min(max(maxBytes + SparseIndex.spacing + 4096, 256 << 10), 4 << 20)
        let scanner = FrameScanner(file: file, from: entry?.offset ?? 0, to: size, chunkSize: chunkSize)
        var lines = ByteBuffer()
        var collecting = false
        var nextSeq = seq
        var first = true
        while let frame = try scanner.next() {
            let header = frame.header
            if first, let entry, header.firstSeq != entry.seq { return .indexMismatch }
            first = false
            if !collecting {
                if header.lastSeq < seq { continue }
                if header.firstSeq > seq { return .next(header.firstSeq) }
                collecting = true
                lines = ByteBufferAllocator().buffer(capacity: min(maxBytes, size) + 4096)
            } else if header.firstSeq != nextSeq {
                break
            }
            let (last, full) = Self.take(frame, from: nextSeq, through: bound, maxBytes: maxBytes, into: &lines)
            nextSeq = last + 1
            if full || nextSeq > bound { break }
        }
        if first, entry != nil, case .damaged? = scanner.end { return .indexMismatch }
        if collecting, let batch = Batch.fromLines(firstSeq: seq, lines: lines) { return .records(batch) }
        if case .damaged(let offset, let reason)? = scanner.end {
            logger.warning("a segment is damaged; its later records are unreadable", metadata: [
                "segment": "\(path)",
                "offset": "\(offset)", "reason": "\(reason)"])
        }
        return .endOfSegment
    }

    /// Appends the frame's records from `seq` through `bound` to `lines`, stopping before `maxBytes`
    /// would be passed (one record at least overall). Returns the last seq taken and whether it stopped
    /// for `maxBytes`.
    private static func take(_ frame: FrameScanner.Frame, from seq: UInt64, through bound: UInt64, maxBytes: Int,
                             into lines: inout ByteBuffer) -> (last: UInt64, full: Bool) {
        let records = frame.records
        let base = records.baseAddress!
        func lineEnd(after start: Int) -> Int {
            guard start < records.count, let newline = memchr(base + start, 0x0A, records.count - start) else { return records.count }
            return UnsafeRawPointer(newline) - base + 1
        }
        var start = 0
        var current = frame.header.firstSeq
        while current < seq {
            start = lineEnd(after: start)
            current += 1
        }
        let last = min(frame.header.lastSeq, bound)
        if last == frame.header.lastSeq && lines.readableBytes + records.count - start <= maxBytes {
            lines.writeBytes(UnsafeRawBufferPointer(rebasing: records[start...]))
            return (last, false)
        }
        var end = start
        var taken = current - 1
        var full = false
        while taken < last {
            let next = lineEnd(after: end)
            if lines.readableBytes + next - start > maxBytes && (lines.readableBytes > 0 || end > start) {
                full = true
                break
            }
            end = next
            taken += 1
        }
        lines.writeBytes(UnsafeRawBufferPointer(rebasing: records[start..<end]))
        return (taken, full)
    }
}
