import CTailgateChecksum
import CZlib

/// The fixed 32-byte header of a segment frame (see `FrameEncoder` for the whole format).
struct FrameHeader: Equatable {
    static let size = 32
    /// `TGF2` in the file: the frame's checksum is a CRC-32C (what the store writes).
    static let magic: UInt32 = 0x3246_4754
    /// `TGF1` in the file: the frame's checksum is zlib's CRC-32 (written by earlier versions; read).
    static let crc32Magic: UInt32 = 0x3146_4754
    /// The largest body a frame may declare; anything larger is damage, not data.
    static let maxBodyBytes = 1 << 30

    /// Bytes of the records (each record's JSON and a `\n`).
    var recordsLength: Int
    /// Bytes of the publisher offsets after the records (0: none).
    var offsetsLength: Int
    /// How many records the frame holds (at least 1).
    var count: Int
    /// The seq of the first record; the others follow without holes.
    var firstSeq: UInt64
    /// CRC-32 of the header's first 28 bytes and the body.
    var checksum: UInt32

    /// The seq of the last record.
    var lastSeq: UInt64 { firstSeq + UInt64(count) - 1 }
    /// Bytes after the header.
    var bodyLength: Int { recordsLength + offsetsLength }
    /// Bytes of the whole frame.
    var frameLength: Int { Self.size + bodyLength }

    /// Reads a header at `pointer`; `nil` when the bytes cannot be a header (wrong magic, impossible
    /// lengths or seqs), which readers treat as the end of the valid frames.
    init?(at pointer: UnsafeRawPointer) {
        func word(_ offset: Int) -> UInt32 { UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        guard word(0) == Self.magic || word(0) == Self.crc32Magic, word(24) == 0 else { return nil }
        recordsLength = Int(word(4))
        offsetsLength = Int(word(8))
        count = Int(word(12))
        firstSeq = UInt64(littleEndian: pointer.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        checksum = word(28)
        guard count >= 1, recordsLength >= 2 * count, recordsLength + offsetsLength <= Self.maxBodyBytes,
              firstSeq >= 1, firstSeq <= UInt64.max - UInt64(count) else { return nil }
    }

    init(recordsLength: Int, offsetsLength: Int, count: Int, firstSeq: UInt64, checksum: UInt32 = 0) {
        self.recordsLength = recordsLength
        self.offsetsLength = offsetsLength
        self.count = count
        self.firstSeq = firstSeq
        self.checksum = checksum
    }

    /// Writes the header's 32 bytes at `pointer`, with `checksum` as it is.
    func write(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        pointer.storeBytes(of: UInt32(recordsLength).littleEndian, toByteOffset: 4, as: UInt32.self)
        pointer.storeBytes(of: UInt32(offsetsLength).littleEndian, toByteOffset: 8, as: UInt32.self)
        pointer.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 12, as: UInt32.self)
        pointer.storeBytes(of: firstSeq.littleEndian, toByteOffset: 16, as: UInt64.self)
        pointer.storeBytes(of: UInt32(0), toByteOffset: 24, as: UInt32.self)
        pointer.storeBytes(of: checksum.littleEndian, toByteOffset: 28, as: UInt32.self)
    }

    /// The checksum of a frame whose header (first 28 bytes) is at `header` and body at `body`: a
    /// CRC-32C, or zlib's CRC-32 for a frame whose magic says `TGF1`.
    static func checksum(header: UnsafeRawPointer, body: UnsafeRawBufferPointer) -> UInt32 {
        let headBytes = UnsafeRawBufferPointer(start: header, count: 28)
        if UInt32(littleEndian: header.loadUnaligned(as: UInt32.self)) == crc32Magic {
            return CRC32.update(CRC32.update(0, headBytes), body)
        }
        return CRC32C.update(CRC32C.update(0, headBytes), body)
    }
}

/// CRC-32C (Castagnoli): the CPU's CRC32 instruction where there is one, several times faster than
/// zlib's CRC-32 (Benchmarks/results/store: the store's writer spent a quarter of its time in it).
enum CRC32C {
    /// Continues `crc` over `bytes`.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return tailgate_crc32c(crc, base, bytes.count)
    }
}

/// zlib's CRC-32.
enum CRC32 {
    /// Continues `crc` over `bytes`.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        var crc = UInt(crc)
        var pointer = base.assumingMemoryBound(to: UInt8.self)
        var remaining = bytes.count
        while remaining > 0 {
            let chunk = min(remaining, 1 << 30)
            crc = crc32(crc, pointer, UInt32(chunk))
            pointer += chunk
            remaining -= chunk
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}

/// The publisher offsets a frame may carry after its records: for each publisher, its id's length
/// (UInt16, little-endian), its id (UTF-8) and its offset (UInt64, little-endian); sorted by id.
enum PublisherOffsetsCoding {
    /// Bytes that `offsets` take.
    static func length(of offsets: [String: UInt64]) -> Int {
        offsets.keys.reduce(0) { $0 + 10 + $1.utf8.count }
    }

    /// Writes `offsets` at `pointer`, which has room for `length(of:)` bytes.
    static func write(_ offsets: [String: UInt64], to pointer: UnsafeMutableRawPointer) {
        var at = 0
        for (id, offset) in offsets.sorted(by: { $0.key < $1.key }) {
            let utf8 = Array(id.utf8)
            pointer.storeBytes(of: UInt16(utf8.count).littleEndian, toByteOffset: at, as: UInt16.self)
            utf8.withUnsafeBytes { (pointer + at + 2).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            pointer.storeBytes(of: offset.littleEndian, toByteOffset: at + 2 + utf8.count, as: UInt64.self)
            at += 10 + utf8.count
        }
    }

    /// Reads offsets written by `write`, merging them into `into` (later frames win); `false` when the
    /// bytes are not well formed.
    @discardableResult
    static func read(_ bytes: UnsafeRawBufferPointer, into offsets: inout [String: UInt64]) -> Bool {
        var at = 0
        while at < bytes.count {
            guard at + 2 <= bytes.count else { return false }
            let length = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
            guard at + 2 + length + 8 <= bytes.count else { return false }
            let id = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(at + 2)..<(at + 2 + length)]), as: UTF8.self)
            offsets[id] = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at + 2 + length, as: UInt64.self))
            at += 10 + length
        }
        return true
    }
}
