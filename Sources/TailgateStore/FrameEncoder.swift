import NIOCore
import TailgateCore

/// Encodes records into segment frames: the on-disk format of a run's history.
///
/// A segment (`<first seq, 20 digits>.seg`) is a sequence of frames, appended and never rewritten. A
/// frame holds consecutive records (no seq missing inside a frame; between frames seqs may jump, which
/// readers answer with a `gap`):
///
/// ```text
/// offset size  field (integers little-endian)
///  0     4     magic "TGF2" ("TGF1": the checksum is zlib's CRC-32; earlier versions wrote it, it is still read)
///  4     4     recordsLength: bytes of the records section
///  8     4     offsetsLength: bytes of the publisher offsets section (0: none)
/// 12     4     count: records in the frame (>= 1)
/// 16     8     firstSeq: seq of the first record; record i has firstSeq + i
/// 24     4     reserved, 0
/// 28     4     CRC-32C of bytes 0..<28, then of the records and offsets sections
/// 32     …     records: each record's JSON object exactly as published, followed by "\n"
///        …     offsets: per publisher, u16 id length, id (UTF-8), u64 highest offset, sorted by id
/// ```
///
/// The records section is NDJSON, so exports copy it unchanged. A frame carries the publishers' offsets
/// as of its last record, inside the same checksum as the records: records and the offsets that account
/// for them are written, and cut off after a crash, together. A frame that is short or fails its
/// checksum ends the valid part of its segment: recovery cuts it off (see `SegmentRecovery`).
enum FrameEncoder {
    /// Bytes of the frame that `encode` makes of `batches` and `offsets`.
    static func frameLength(of batches: some Collection<Batch>, offsets: [String: UInt64]) -> Int {
        FrameHeader.size + batches.reduce(0) { $0 + $1.recordBytes + $1.count } + PublisherOffsetsCoding.length(of: offsets)
    }

    /// Appends one frame holding every record of `batches` (consecutive seqs) and `offsets` to `buffer`,
    /// and returns its header.
    @discardableResult
    static func encode(_ batches: some Collection<Batch>, offsets: [String: UInt64], into buffer: inout ByteBuffer) -> FrameHeader {
        precondition(!batches.isEmpty)
        let length = frameLength(of: batches, offsets: offsets)
        buffer.reserveCapacity(minimumWritableBytes: length)
        let start = buffer.readableBytes
        buffer.writeRepeatingByte(0, count: FrameHeader.size)
        var count = 0
        for batch in batches {
            batch.writeLines(into: &buffer)
            count += batch.count
        }
        let recordsLength = buffer.readableBytes - start - FrameHeader.size
        let offsetsLength = PublisherOffsetsCoding.length(of: offsets)
        if offsetsLength > 0 {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: offsetsLength) { raw in
                PublisherOffsetsCoding.write(offsets, to: raw.baseAddress!)
                return offsetsLength
            }
        }
        var header = FrameHeader(recordsLength: recordsLength, offsetsLength: offsetsLength, count: count,
                                 firstSeq: batches.first!.firstSeq)
        buffer.withUnsafeMutableReadableBytes { raw in
            let frame = raw.baseAddress! + start
            header.write(to: frame)
            header.checksum = FrameHeader.checksum(header: frame, body: UnsafeRawBufferPointer(start: frame + FrameHeader.size,
                                                                                                count: header.bodyLength))
            header.write(to: frame)
        }
        assert(buffer.readableBytes - start == length)
        return header
    }
}
