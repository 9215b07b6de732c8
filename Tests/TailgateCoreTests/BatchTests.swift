import Foundation
import NIOCore
import Synchronization
import Testing
@testable import TailgateCore

@Suite("Batch and BatchBuilder")
struct BatchTests {
    static let records: [LogRecord] = [
        LogRecord(level: .info, message: "bar 002050.SZ close=10.5", loggerName: "strategy", module: "engine", funcName: "on_bar", lineNo: 10),
        LogRecord(level: .warning, message: "slow \"tick\"", metadata: ["lag_ms": "120"]),
        LogRecord(level: .error, message: "\u{1B}[31mrejected\u{1B}[0m\n", loggerName: "oms"),
        LogRecord(level: .debug, message: "世界 🚀", metadata: [:]),
        LogRecord(level: .critical, message: ""),
    ]

    func makeBatch(firstSeq: UInt64 = 10) -> Batch {
        var builder = BatchBuilder(firstSeq: firstSeq)
        #expect(builder.count == 0)
        #expect(builder.nextSeq == firstSeq)
        for (index, record) in Self.records.enumerated() {
            builder.append(record, timestamp: Timestamp(microseconds: Int64(index) * 1_000_001))
            #expect(builder.count == index + 1)
            #expect(builder.nextSeq == firstSeq + UInt64(index) + 1)
        }
        #expect(builder.byteCount > 0)
        return builder.finish()!
    }

    @Test func emptyBuilderFinishesWithNothing() {
        var empty = BatchBuilder(firstSeq: 1)
        #expect(empty.finish() == nil)
    }

    @Test func seqsAndCount() {
        let batch = makeBatch(firstSeq: 10)
        #expect(batch.firstSeq == 10)
        #expect(batch.lastSeq == 14)
        #expect(batch.count == 5)
    }

    @Test func recordSlicesAreTheEncodedRecords() throws {
        let batch = makeBatch(firstSeq: 10)
        for (index, record) in Self.records.enumerated() {
            let seq = 10 + UInt64(index)
            var expected = ByteBuffer()
            RecordEncoder.encode(record, seq: seq, timestamp: Timestamp(microseconds: Int64(index) * 1_000_001), into: &expected)
            let slice = batch.record(seq)
            #expect(slice == expected, "seq \(seq)")
            let value = try parseJSON(slice)
            #expect(value["seq"]?.intValue == Int(seq))
            #expect(value["message"] == .string(record.message))
        }
    }

    @Test func payloadIsALogsMessage() throws {
        let batch = makeBatch(firstSeq: 10)
        let text = String(buffer: batch.payload)
        #expect(text.hasPrefix(#"{"type":"logs","records":[{"seq":10,"#))
        #expect(text.hasSuffix("}]}"))
        #expect(try logsSeqs(batch.payload) == [10, 11, 12, 13, 14])
        let object = try #require(try foundationJSON(batch.payload) as? [String: Any])
        #expect(object["type"] as? String == "logs")
        let records = try #require(object["records"] as? [[String: Any]])
        #expect(records.map { ($0["seq"] as? NSNumber)?.intValue } == [10, 11, 12, 13, 14])
        #expect(records.map { $0["message"] as? String } == Self.records.map(\.message))
    }

    @Test func payloadFromEveryStartSeq() throws {
        let batch = makeBatch(firstSeq: 10)
        for start in batch.firstSeq...batch.lastSeq {
            let payload = batch.payload(from: start)
            #expect(try logsSeqs(payload) == Array(Int(start)...14), "from \(start)")
            let object = try #require(try foundationJSON(payload) as? [String: Any])
            let records = try #require(object["records"] as? [[String: Any]])
            #expect(records.count == Int(14 - start + 1))
            // The records are the very same bytes.
            var expected = ByteBuffer()
            expected.writeString(#"{"type":"logs","records":["#)
            for seq in start...batch.lastSeq {
                if seq != start { expected.writeString(",") }
                var slice = batch.record(seq)
                expected.writeBuffer(&slice)
            }
            expected.writeString("]}")
            #expect(payload == expected)
        }
        #expect(batch.payload(from: 10) == batch.payload)
    }

    @Test func singleRecordBatch() throws {
        var builder = BatchBuilder(firstSeq: 1)
        builder.append(LogRecord(message: "only"), timestamp: Timestamp(microseconds: 0))
        let finished = builder.finish()
        let batch = try #require(finished)
        #expect(batch.firstSeq == 1 && batch.lastSeq == 1 && batch.count == 1)
        #expect(try logsSeqs(batch.payload) == [1])
        #expect(batch.recordBytes == batch.record(1).readableBytes)
        #expect(batch.payload.readableBytes == batch.recordBytes + #"{"type":"logs","records":[]}"#.utf8.count)
    }

    @Test func linesAreTheRecordsOnePerLine() throws {
        for batch in [makeBatch(firstSeq: 10), Batch.fromLines(firstSeq: 3, lines: ByteBuffer(string: "{\"a\":\"x,y\"}\n"))!] {
            var expected = ""
            batch.forEachRecord { _, record in expected += String(buffer: record) + "\n" }
            var lines = ByteBuffer(string: "before|")
            batch.writeLines(into: &lines)
            #expect(String(buffer: lines) == "before|" + expected)
            #expect(lines.readableBytes == "before|".utf8.count + batch.recordBytes + batch.count)
            // The stored form reads back as the same batch.
            lines.moveReaderIndex(forwardBy: "before|".utf8.count)
            #expect(Batch.fromLines(firstSeq: batch.firstSeq, lines: lines)?.payload == batch.payload)
        }
    }

    @Test func recordBytesCountTheRecordsAlone() {
        let batch = makeBatch(firstSeq: 10)
        let sizes = (batch.firstSeq...batch.lastSeq).map { batch.record($0).readableBytes }
        #expect(batch.recordBytes == sizes.reduce(0, +))
        let envelope = #"{"type":"logs","records":[]}"#.utf8.count
        let commas = batch.count - 1
        #expect(batch.payload.readableBytes == batch.recordBytes + envelope + commas)
        for (index, seq) in (batch.firstSeq...batch.lastSeq).enumerated() {
            #expect(batch.recordBytes(from: seq) == sizes[index...].reduce(0, +))
            #expect(batch.recordSize(seq) == sizes[index])
        }
    }

    @Test func mergingKeepsRecordsAndOrder() throws {
        let batches = [makeBatch(firstSeq: 1), makeBatch(firstSeq: 6), makeBatch(firstSeq: 11)]
        let merged = Batch.merging(batches, from: 3)
        #expect(merged.firstSeq == 3 && merged.lastSeq == 15)
        #expect(try logsSeqs(merged.payload) == Array(3...15))
        for seq in UInt64(3)...15 {
            let source = batches.first { $0.firstSeq <= seq && seq <= $0.lastSeq }!
            #expect(merged.record(seq) == source.record(seq))
            #expect(merged.recordSize(seq) == source.recordSize(seq))
        }
        #expect(merged.recordBytes == (UInt64(3)...15).map { merged.recordSize($0) }.reduce(0, +))
        // From inside the last batch: that batch's tail alone.
        let tail = Batch.merging(batches, from: 13)
        #expect(try logsSeqs(tail.payload) == Array(13...15))
        #expect(tail.record(13) == batches[2].record(13))
    }

    @Test func derivedBytesAreMadeOncePerKey() {
        let batch = makeBatch()
        let calls = Counter()
        func make(_ tag: String) -> (Batch) -> ByteBuffer {
            { batch in
                calls.increment()
                var out = ByteBuffer()
                out.writeString(tag)
                out.writeJSONInteger(batch.firstSeq)
                return out
            }
        }
        let a1 = batch.derivedBytes(key: 1, make: make("a"))
        let a2 = batch.derivedBytes(key: 1, make: make("other"))
        let b1 = batch.derivedBytes(key: 2, make: make("b"))
        let b2 = batch.derivedBytes(key: 2, make: make("other"))
        #expect(calls.count == 2)
        #expect(String(buffer: a1) == "a10" && a1 == a2)
        #expect(String(buffer: b1) == "b10" && b1 == b2)
        // Another batch has its own cache.
        _ = makeBatch().derivedBytes(key: 1, make: make("c"))
        #expect(calls.count == 3)
    }

    @Test func derivedBytesAreMadeOnceUnderConcurrency() async {
        let batch = makeBatch()
        let keys = 4
        let callsPerKey = (0..<keys).map { _ in Counter() }
        let results = Locked<[Int: Set<String>]>([:])
        await onThreads(8) { thread in
            for round in 0..<400 {
                let key = (thread + round) % keys
                let bytes = batch.derivedBytes(key: key) { batch in
                    callsPerKey[key].increment()
                    // Take a moment, so that other threads arrive while this one makes the bytes.
                    var out = ByteBuffer()
                    for _ in 0..<200 { out.writeString("k\(key)") }
                    out.writeJSONInteger(batch.lastSeq)
                    return out
                }
                results.withLock { _ = $0[key, default: []].insert(String(buffer: bytes)) }
            }
        }
        for key in 0..<keys {
            #expect(callsPerKey[key].count == 1, "key \(key)")
            #expect(results.withLock { $0[key]?.count } == 1)
        }
    }
}
