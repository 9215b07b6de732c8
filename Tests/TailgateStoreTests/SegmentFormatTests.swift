import CTailgateChecksum
import Foundation
import NIOCore
import TailgateCore
import Testing
@testable import TailgateStore

@Suite("Segment frames and sparse indexes")
struct SegmentFormatTests {
    /// Frames encoded into a file, and the file.
    private func writeFrames(_ folder: TemporaryFolder, _ frames: [([Batch], [String: UInt64])]) throws -> (DiskFile, [UInt8]) {
        var buffer = ByteBuffer()
        for (batches, offsets) in frames { FrameEncoder.encode(batches, offsets: offsets, into: &buffer) }
        let bytes = Array(buffer.readableBytesView)
        let path = folder.path + "/frames.seg"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (try DiskFile.openForReading(path), bytes)
    }

    @Test func aFrameHoldsTheRecordsAsNDJSONAndTheOffsets() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let first = makeBatch(firstSeq: 7, count: 3)
        let second = makeBatch(firstSeq: 10, count: 2)
        let (file, bytes) = try writeFrames(folder, [([first, second], ["run-7f3a": 125, "p": 1])])

        var expected = ""
        for batch in [first, second] { batch.forEachRecord { _, record in expected += String(buffer: record) + "\n" } }
        let header = try #require(bytes.withUnsafeBytes { FrameHeader(at: $0.baseAddress!) })
        #expect(Array(bytes.prefix(4)) == Array("TGF2".utf8))
        #expect(header.firstSeq == 7 && header.count == 5 && header.lastSeq == 11)
        #expect(header.recordsLength == expected.utf8.count)
        #expect(String(decoding: bytes[32..<(32 + header.recordsLength)], as: UTF8.self) == expected, "exports copy these bytes as they are")
        #expect(bytes.count == FrameEncoder.frameLength(of: [first, second], offsets: ["run-7f3a": 125, "p": 1]))

        let scanner = FrameScanner(file: file, from: 0, to: bytes.count, chunkSize: 64)
        let frame = try #require(try scanner.next())
        var offsets: [String: UInt64] = [:]
        #expect(PublisherOffsetsCoding.read(frame.offsets, into: &offsets))
        #expect(offsets == ["run-7f3a": 125, "p": 1])
        #expect(try scanner.next() == nil)
        #expect(scanner.end == .endOfData && scanner.validEnd == bytes.count)
    }

    /// A frame as earlier versions wrote it: magic `TGF1` and zlib's CRC-32.
    private func asCRC32Frame(_ frame: [UInt8]) -> [UInt8] {
        var bytes = frame
        bytes[3] = UInt8(ascii: "1")
        bytes.withUnsafeMutableBytes { raw in
            let header = raw.baseAddress!
            let crc = CRC32.update(CRC32.update(0, UnsafeRawBufferPointer(start: header, count: 28)),
                                   UnsafeRawBufferPointer(rebasing: raw[FrameHeader.size...]))
            header.storeBytes(of: crc.littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        return bytes
    }

    @Test func framesOfEarlierVersionsAreStillRead() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        // A segment begun by an earlier version (CRC-32 frames) and continued by this one (CRC-32C).
        let (_, old) = try writeFrames(folder, [([makeBatch(firstSeq: 1, count: 3)], ["p": 3])])
        let (_, new) = try writeFrames(folder, [([makeBatch(firstSeq: 4, count: 2)], ["p": 5])])
        let mixed = asCRC32Frame(old) + new
        let path = folder.path + "/mixed.seg"
        try Data(mixed).write(to: URL(fileURLWithPath: path))
        let scanner = FrameScanner(file: try DiskFile.openForReading(path), from: 0, to: mixed.count)
        #expect(try scanner.next()?.header.firstSeq == 1)
        #expect(try scanner.next()?.header.firstSeq == 4)
        #expect(try scanner.next() == nil)
        #expect(scanner.end == .endOfData && scanner.validEnd == mixed.count)
        // The old checksum guards old frames: a CRC-32C there, or a changed byte, is damage.
        var wrong = asCRC32Frame(old)
        wrong[40] ^= 1
        try Data(wrong).write(to: URL(fileURLWithPath: path))
        #expect(try FrameScanner(file: try DiskFile.openForReading(path), from: 0, to: wrong.count).next() == nil)
        var relabelled = old
        relabelled[3] = UInt8(ascii: "1")
        try Data(relabelled).write(to: URL(fileURLWithPath: path))
        #expect(try FrameScanner(file: try DiskFile.openForReading(path), from: 0, to: relabelled.count).next() == nil)
    }

    /// CRC-32C one bit at a time, as the definition says.
    private func referenceCRC32C(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        var crc = ~seed
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    @Test func crc32cIsTheCastagnoliChecksum() {
        func crc(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 { bytes.withUnsafeBytes { CRC32C.update(seed, $0) } }
        #expect(crc(Array("123456789".utf8)) == 0xE306_9283)  // the check value of CRC-32C
        #expect(crc([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)  // RFC 3720, B.4
        #expect(crc([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(crc([]) == 0)
        // Every length and alignment around the 8-byte steps, continued in two parts.
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        for start in 0..<9 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] where start + length <= data.count {
                let part = Array(data[start..<(start + length)])
                #expect(crc(part) == referenceCRC32C(part), "start \(start) length \(length)")
                let half = length / 2
                #expect(crc(Array(part[half...]), seed: crc(Array(part[..<half]))) == crc(part))
                // The table, used where the CPU has no CRC32 instruction, gives the same.
                #expect(part.withUnsafeBytes { tailgate_crc32c_portable(0, $0.baseAddress, $0.count) } == referenceCRC32C(part))
            }
        }
    }

    @Test func everyChangedByteIsCaught() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (_, intact) = try writeFrames(folder, [([makeBatch(firstSeq: 1, count: 2, messageBytes: 10)], ["p": 9])])
        let path = folder.path + "/changed.seg"
        for position in intact.indices {
            var changed = intact
            changed[position] ^= 0x20
            try Data(changed).write(to: URL(fileURLWithPath: path))
            let scanner = FrameScanner(file: try DiskFile.openForReading(path), from: 0, to: changed.count)
            #expect(try scanner.next() == nil, "byte \(position) changed unnoticed")
            #expect(scanner.validEnd == 0)
        }
    }

    @Test func aScanStopsAtTheFirstBadFrameAndSaysWhere() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (_, bytes) = try writeFrames(folder, [([makeBatch(firstSeq: 1, count: 4)], [:]), ([makeBatch(firstSeq: 5, count: 4)], [:])])
        let firstLength = FrameEncoder.frameLength(of: [makeBatch(firstSeq: 1, count: 4)], offsets: [:])
        let path = folder.path + "/cut.seg"
        try Data(bytes.dropLast(1)).write(to: URL(fileURLWithPath: path))
        // A small chunk makes the scanner refill and grow its buffer on the way.
        let scanner = FrameScanner(file: try DiskFile.openForReading(path), from: 0, to: bytes.count - 1, chunkSize: 40)
        #expect(try scanner.next()?.header.firstSeq == 1)
        #expect(try scanner.next() == nil)
        #expect(scanner.end == .damaged(offset: firstLength, reason: "short frame"))
        #expect(scanner.validEnd == firstLength)
    }

    @Test func theIndexFindsTheEntryAtOrBeforeASeq() {
        var index = SparseIndex()
        let added = [
            index.noteFrame(seq: 1, offset: 0),
            index.noteFrame(seq: 50, offset: 1000),
            index.noteFrame(seq: 100, offset: SparseIndex.spacing + 10),
            index.noteFrame(seq: 300, offset: 3 * SparseIndex.spacing),
        ]
        #expect(added == [true, false, true, true], "a frame too close to the last entry is not indexed")
        #expect(index.entry(atOrBefore: 0) == nil)
        #expect(index.entry(atOrBefore: 1)?.offset == 0)
        #expect(index.entry(atOrBefore: 99)?.seq == 1)
        #expect(index.entry(atOrBefore: 100)?.seq == 100)
        #expect(index.entry(atOrBefore: 1_000_000)?.seq == 300)
        #expect(SparseIndex.decode(index.encoded(), segmentSize: 4 * SparseIndex.spacing) == index)
    }

    /// Index files that must be rebuilt rather than trusted.
    static let damagedIndexes: [(String, [SparseIndex.Entry])] = [
        ("first entry not at offset 0", [.init(seq: 1, offset: 8)]),
        ("seqs not increasing", [.init(seq: 1, offset: 0), .init(seq: 1, offset: 70_000)]),
        ("offsets not increasing", [.init(seq: 1, offset: 0), .init(seq: 9, offset: 0)]),
        ("offset past the segment", [.init(seq: 1, offset: 0), .init(seq: 9, offset: 200_000)]),
        ("seq 0", [.init(seq: 0, offset: 0)]),
    ]

    @Test(arguments: damagedIndexes)
    func damagedIndexesAreRefused(reason: String, entries: [SparseIndex.Entry]) {
        #expect(SparseIndex.decode(SparseIndex(entries: entries).encoded(), segmentSize: 100_000) == nil, "\(reason)")
    }

    @Test func aPartialEntryIsRefused() {
        let bytes = SparseIndex(entries: [.init(seq: 1, offset: 0)]).encoded()
        #expect(SparseIndex.decode(Array(bytes.dropLast()), segmentSize: 100) == nil)
    }

    @Test func manifestsRoundTripAndRefuseGarbage() throws {
        var info = RunInfo(id: runID("002050.SZ", "abc"), owner: .inProcess, startedAt: Timestamp(microseconds: 1_764_000_000_123_456),
                           stoppedAt: Timestamp(microseconds: 1_764_000_100_000_000), status: .failed, exitCode: -9,
                           reason: "killed by signal 9", firstSeq: 5, lastSeq: 20_000, storedBytes: 4_123_456)
        let manifest = RunManifest(info: info, publisherOffsets: ["a": 1, "b": 1 << 52], offsetsThroughSeq: 20_000)
        #expect(try RunManifest.decode(manifest.encoded(), path: "m") == manifest)
        info.stoppedAt = nil
        info.exitCode = nil
        info.reason = nil
        let running = RunManifest(info: info)
        #expect(try RunManifest.decode(running.encoded(), path: "m") == running)
        for garbage in ["", "{", "[]", "{\"worker\":\"a\"}", "{\"worker\":\"/x\",\"epoch\":\"e\"}"] {
            #expect(throws: StoreError.self) { try RunManifest.decode(Data(garbage.utf8), path: "m") }
        }
    }
}
