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
        #expect(Array(bytes.prefix(4)) == Array("TGF1".utf8))
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
