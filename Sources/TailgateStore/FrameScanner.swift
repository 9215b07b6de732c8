/// Reads the frames of a segment in order, in large chunks (one `pread` per chunk, not per frame),
/// checking each frame's header and checksum.
///
/// The scan stops at the first frame that is short or damaged: `end` then says where and why, and
/// `validEnd` is where the valid frames end (what recovery cuts the file back to).
final class FrameScanner {
    /// One frame; `body` (records then offsets) stays valid until the next call to `next()`.
    struct Frame {
        var offset: Int
        var header: FrameHeader
        var body: UnsafeRawBufferPointer

        /// The records section: NDJSON.
        var records: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[0..<header.recordsLength]) }
        /// The publisher offsets section.
        var offsets: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[header.recordsLength...]) }
    }

    /// Why the scan stopped.
    enum End: Equatable {
        /// Every byte up to the limit was valid frames.
        case endOfData
        /// The bytes at `offset` are not a valid frame.
        case damaged(offset: Int, reason: String)
    }

    private let file: DiskFile
    private let limit: Int
    private var buffer: UnsafeMutableRawBufferPointer
    private var bufferFileOffset: Int
    private var bufferCount = 0

    /// Where the valid frames read so far end.
    private(set) var validEnd: Int
    /// Why the scan stopped, once it has.
    private(set) var end: End?

    /// Scans `file` from `start` (a frame's offset) to `limit` (the bytes known to be written), reading
    /// `chunkSize` bytes at a time (more when one frame is larger).
    init(file: DiskFile, from start: Int, to limit: Int, chunkSize: Int = 1 << 20) {
        self.file = file
        self.limit = limit
        self.validEnd = start
        self.bufferFileOffset = start
        buffer = .allocate(byteCount: max(chunkSize, FrameHeader.size), alignment: 16)
    }

    deinit {
        buffer.deallocate()
    }

    /// The next valid frame, or `nil` at the end of the data or at a damaged frame (see `end`).
    func next() throws(StoreError) -> Frame? {
        guard end == nil else { return nil }
        let position = validEnd
        if position >= limit {
            end = .endOfData
            return nil
        }
        guard try ensure(FrameHeader.size, at: position) else {
            end = .damaged(offset: position, reason: "short frame header")
            return nil
        }
        let start = buffer.baseAddress! + (position - bufferFileOffset)
        guard let header = FrameHeader(at: start) else {
            end = .damaged(offset: position, reason: "not a frame header")
            return nil
        }
        guard try ensure(header.frameLength, at: position) else {
            end = .damaged(offset: position, reason: "short frame")
            return nil
        }
        let frameStart = buffer.baseAddress! + (position - bufferFileOffset)
        let body = UnsafeRawBufferPointer(start: frameStart + FrameHeader.size, count: header.bodyLength)
        guard FrameHeader.checksum(header: frameStart, body: body) == header.checksum else {
            end = .damaged(offset: position, reason: "checksum mismatch")
            return nil
        }
        validEnd = position + header.frameLength
        return Frame(offset: position, header: header, body: body)
    }

    /// Makes bytes `position..<position + count` of the file available in the buffer; `false` when the
    /// file (or the limit) ends before.
    private func ensure(_ count: Int, at position: Int) throws(StoreError) -> Bool {
        guard position + count <= limit else { return false }
        let startInBuffer = position - bufferFileOffset
        if startInBuffer >= 0, startInBuffer + count <= bufferCount { return true }
        let kept = (startInBuffer >= 0 && startInBuffer < bufferCount) ? bufferCount - startInBuffer : 0
        if count > buffer.count {
            let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, buffer.count * 2), alignment: 16)
            if kept > 0 { larger.baseAddress!.copyMemory(from: buffer.baseAddress! + startInBuffer, byteCount: kept) }
            buffer.deallocate()
            buffer = larger
        } else if kept > 0, startInBuffer > 0 {
            buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + startInBuffer, byteCount: kept)
        }
        bufferFileOffset = position
        bufferCount = kept
        let want = min(buffer.count - bufferCount, limit - (bufferFileOffset + bufferCount))
        if want > 0 {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[bufferCount..<(bufferCount + want)])
            bufferCount += try file.read(into: target, at: bufferFileOffset + bufferCount)
        }
        return bufferCount >= count
    }
}
