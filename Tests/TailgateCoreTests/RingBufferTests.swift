import NIOCore
import Testing
@testable import TailgateCore

/// What the ring should hold: the newest records, as few evicted from the front as needed to respect both bounds.
private struct RingModel {
    let maxRecords: Int
    let maxBytes: Int
    private(set) var held: [(seq: UInt64, size: Int)] = []
    private(set) var lastSeq: UInt64 = 0

    init(maxRecords: Int, maxBytes: Int) {
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
    }

    mutating func append(_ batch: Batch) {
        if batch.firstSeq != lastSeq + 1 { held.removeAll() }
        for seq in batch.firstSeq...batch.lastSeq { held.append((seq, batch.record(seq).readableBytes)) }
        lastSeq = batch.lastSeq
        var bytes = recordBytes
        var drop = 0
        while drop < held.count && (held.count - drop > maxRecords || bytes > maxBytes) {
            bytes -= held[drop].size
            drop += 1
        }
        held.removeFirst(drop)
    }

    var firstSeq: UInt64 { held.first?.seq ?? lastSeq + 1 }
    var count: Int { held.count }
    var recordBytes: Int { held.reduce(0) { $0 + $1.size } }
}

/// Messages whose length varies with the seq, so that byte bounds bite at varying places.
private func padding(_ seq: UInt64) -> Int { Int(seq &* 2_654_435_761 % 61) }

private func ringBatch(first: UInt64, count: Int) -> Batch {
    var builder = BatchBuilder(firstSeq: first)
    for seq in first..<first + UInt64(count) {
        builder.append(LogRecord(message: message(for: seq, padding: padding(seq))), timestamp: Timestamp(microseconds: Int64(seq)))
    }
    return builder.finish()!
}

private func expectSameCounters(_ ring: RingBuffer, _ model: RingModel, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(ring.firstSeq == model.firstSeq, sourceLocation: sourceLocation)
    #expect(ring.lastSeq == model.lastSeq, sourceLocation: sourceLocation)
    #expect(ring.count == model.count, sourceLocation: sourceLocation)
    #expect(ring.recordBytes == model.recordBytes, sourceLocation: sourceLocation)
    #expect(ring.isEmpty == (model.count == 0), sourceLocation: sourceLocation)
}

/// Every held record is retrievable, in order, with its own content, both by walking and by lookup.
private func expectIntact(_ ring: RingBuffer, _ model: RingModel, sourceLocation: SourceLocation = #_sourceLocation) throws {
    expectSameCounters(ring, model, sourceLocation: sourceLocation)
    var walked: [UInt64] = []
    var walkedBytes = 0
    var failures = 0
    ring.forEachRecord(from: 0) { seq, bytes in
        walked.append(seq)
        walkedBytes += bytes.readableBytes
        let value = try? parseJSON(bytes)
        if value?["seq"]?.intValue != Int(seq) || value?["message"] != .string(message(for: seq, padding: padding(seq))) {
            failures += 1
        }
        return true
    }
    #expect(failures == 0, "records with wrong content", sourceLocation: sourceLocation)
    #expect(walked == model.held.map(\.seq), sourceLocation: sourceLocation)
    #expect(walkedBytes == ring.recordBytes, sourceLocation: sourceLocation)

    var batches: [ObjectIdentifier: Batch] = [:]
    for seq in model.held.map(\.seq) {
        guard let batch = ring.batch(containing: seq) else {
            Issue.record("no batch for \(seq)", sourceLocation: sourceLocation)
            continue
        }
        #expect(batch.firstSeq <= seq && seq <= batch.lastSeq, sourceLocation: sourceLocation)
        batches[ObjectIdentifier(batch)] = batch
    }
    #expect(batches.count == ring.batchCount, sourceLocation: sourceLocation)
    for batch in batches.values {
        #expect(try logsSeqs(batch.payload) == Array(Int(batch.firstSeq)...Int(batch.lastSeq)), sourceLocation: sourceLocation)
    }
    #expect(ring.batch(containing: model.firstSeq &- 1) == nil, sourceLocation: sourceLocation)
    #expect(ring.batch(containing: model.lastSeq + 1) == nil, sourceLocation: sourceLocation)
    #expect(ring.batch(containing: 0) == nil, sourceLocation: sourceLocation)
    #expect(ring.batch(containing: .max) == nil, sourceLocation: sourceLocation)
}

@Suite("RingBuffer")
struct RingBufferTests {
    @Test func startsEmpty() {
        let ring = RingBuffer(maxRecords: 10, maxBytes: 1000)
        #expect(ring.firstSeq == 1 && ring.lastSeq == 0)
        #expect(ring.count == 0 && ring.isEmpty && ring.recordBytes == 0 && ring.batchCount == 0)
        #expect(ring.batch(containing: 0) == nil && ring.batch(containing: 1) == nil)
        var calls = 0
        ring.forEachRecord(from: 0) { _, _ in calls += 1; return true }
        #expect(calls == 0)
    }

    @Test func evictsByRecordCount() throws {
        var ring = RingBuffer(maxRecords: 5, maxBytes: 1 << 20)
        var model = RingModel(maxRecords: 5, maxBytes: 1 << 20)
        let expected: [(first: UInt64, last: UInt64, batches: Int)] = [(1, 3, 1), (2, 6, 2), (5, 9, 2), (8, 12, 2), (11, 15, 2)]
        for (index, step) in expected.enumerated() {
            let batch = ringBatch(first: UInt64(index * 3 + 1), count: 3)
            ring.append(batch)
            model.append(batch)
            #expect(ring.firstSeq == step.first && ring.lastSeq == step.last, "append \(index)")
            #expect(ring.count == Int(step.last - step.first + 1))
            #expect(ring.batchCount == step.batches)
            let bytes = (step.first...step.last).reduce(0) { $0 + ring.batch(containing: $1)!.record($1).readableBytes }
            #expect(ring.recordBytes == bytes)
            try expectIntact(ring, model)
        }
    }

    @Test func batchLargerThanTheRingKeepsItsNewestRecords() throws {
        var ring = RingBuffer(maxRecords: 5, maxBytes: 1 << 20)
        let batch = ringBatch(first: 1, count: 12)
        ring.append(batch)
        #expect(ring.firstSeq == 8 && ring.lastSeq == 12 && ring.count == 5 && ring.batchCount == 1)
        #expect(ring.recordBytes == batch.recordBytes(from: 8))
        #expect(ring.batch(containing: 7) == nil)
        #expect(ring.batch(containing: 8) === batch)
    }

    @Test func evictsByBytes() throws {
        // Seqs 1...9 with equal messages encode to equal sizes.
        func single(_ seq: UInt64) -> Batch {
            var builder = BatchBuilder(firstSeq: seq)
            builder.append(LogRecord(message: "same size"), timestamp: Timestamp(microseconds: 0))
            return builder.finish()!
        }
        let size = single(1).recordBytes
        #expect(single(9).recordBytes == size)
        var ring = RingBuffer(maxRecords: 100, maxBytes: 3 * size + size / 2)
        for seq in UInt64(1)...9 {
            ring.append(single(seq))
            let held = min(Int(seq), 3)
            #expect(ring.count == held, "after \(seq)")
            #expect(ring.firstSeq == seq - UInt64(held) + 1)
            #expect(ring.lastSeq == seq)
            #expect(ring.recordBytes == held * size)
            #expect(ring.batchCount == held)
        }
        // Exactly at the bound is allowed.
        var exact = RingBuffer(maxRecords: 100, maxBytes: 3 * size)
        for seq in UInt64(1)...4 { exact.append(single(seq)) }
        #expect(exact.firstSeq == 2 && exact.count == 3 && exact.recordBytes == 3 * size)
    }

    @Test func recordLargerThanTheByteBoundEmptiesTheRing() throws {
        var ring = RingBuffer(maxRecords: 100, maxBytes: 200)
        var model = RingModel(maxRecords: 100, maxBytes: 200)
        let small = ringBatch(first: 1, count: 1)
        ring.append(small)
        model.append(small)
        var builder = BatchBuilder(firstSeq: 2)
        builder.append(LogRecord(message: String(repeating: "big ", count: 100)), timestamp: Timestamp(microseconds: 0))
        let big = builder.finish()!
        ring.append(big)
        model.append(big)
        #expect(ring.isEmpty && ring.count == 0 && ring.recordBytes == 0 && ring.batchCount == 0)
        #expect(ring.firstSeq == 3 && ring.lastSeq == 2)
        #expect(ring.batch(containing: 2) == nil && ring.batch(containing: 1) == nil)
        // The next record is held again.
        let next = ringBatch(first: 3, count: 1)
        ring.append(next)
        model.append(next)
        try expectIntact(ring, model)
        #expect(ring.firstSeq == 3 && ring.count == 1)
    }

    @Test func aJumpAheadEmptiesTheRing() throws {
        var ring = RingBuffer(maxRecords: 100, maxBytes: 1 << 20)
        var model = RingModel(maxRecords: 100, maxBytes: 1 << 20)
        for first in stride(from: UInt64(1), through: 10, by: 2) {
            let batch = ringBatch(first: first, count: 2)
            ring.append(batch)
            model.append(batch)
        }
        #expect(ring.count == 10 && ring.batchCount == 5)
        let jumped = ringBatch(first: 20, count: 5)
        ring.append(jumped)
        model.append(jumped)
        #expect(ring.firstSeq == 20 && ring.lastSeq == 24 && ring.count == 5)
        #expect(ring.batchCount == 1 && ring.recordBytes == jumped.recordBytes)
        #expect(ring.batch(containing: 10) == nil && ring.batch(containing: 15) == nil)
        try expectIntact(ring, model)
        // And it goes on normally after the jump.
        let next = ringBatch(first: 25, count: 3)
        ring.append(next)
        model.append(next)
        try expectIntact(ring, model)
    }

    @Test func mergesOldSmallBatchesKeepingEveryRecord() throws {
        var ring = RingBuffer(maxRecords: 10_000, maxBytes: 1 << 24)
        var model = RingModel(maxRecords: 10_000, maxBytes: 1 << 24)
        var appended: [Batch] = []
        for seq in UInt64(1)...500 {
            let batch = ringBatch(first: seq, count: 1)
            appended.append(batch)
            ring.append(batch)
            model.append(batch)
            expectSameCounters(ring, model)
            if seq % 25 == 0 { try expectIntact(ring, model) }
        }
        try expectIntact(ring, model)
        #expect(ring.count == 500 && ring.firstSeq == 1)
        #expect(ring.batchCount < 100, "old single-record batches were merged (\(ring.batchCount) batches)")
        // The newest batches are kept as they were sent.
        for batch in appended.suffix(RingBuffer.recentBatches) {
            #expect(ring.batch(containing: batch.firstSeq) === batch)
        }
        // Walking from the middle, and stopping early.
        var fromMiddle: [UInt64] = []
        ring.forEachRecord(from: 250) { seq, _ in fromMiddle.append(seq); return true }
        #expect(fromMiddle == Array(250...500))
        var stopped: [UInt64] = []
        ring.forEachRecord(from: 100) { seq, _ in stopped.append(seq); return stopped.count < 3 }
        #expect(stopped == [100, 101, 102])
        var beyond = 0
        ring.forEachRecord(from: 501) { _, _ in beyond += 1; return true }
        #expect(beyond == 0)
    }

    @Test func mergesWhileEvicting() throws {
        var ring = RingBuffer(maxRecords: 100, maxBytes: 1 << 24)
        var model = RingModel(maxRecords: 100, maxBytes: 1 << 24)
        for seq in UInt64(1)...500 {
            let batch = ringBatch(first: seq, count: 1)
            ring.append(batch)
            model.append(batch)
            expectSameCounters(ring, model)
            if seq % 50 == 0 { try expectIntact(ring, model) }
        }
        #expect(ring.firstSeq == 401 && ring.lastSeq == 500 && ring.count == 100)
        #expect(ring.batchCount < 100)
        try expectIntact(ring, model)
    }

    @Test("matches the model for mixed batch sizes and both bounds", arguments: [
        (maxRecords: 50, maxBytes: 1 << 20, seed: UInt64(1)),
        (maxRecords: 400, maxBytes: 1 << 20, seed: 2),
        (maxRecords: 1000, maxBytes: 3000, seed: 3),
        (maxRecords: 7, maxBytes: 700, seed: 4),
        (maxRecords: 10_000, maxBytes: 40_000, seed: 5),
        (maxRecords: 1, maxBytes: 1 << 20, seed: 6),
    ])
    func matchesModel(maxRecords: Int, maxBytes: Int, seed: UInt64) throws {
        var ring = RingBuffer(maxRecords: maxRecords, maxBytes: maxBytes)
        var model = RingModel(maxRecords: maxRecords, maxBytes: maxBytes)
        var state = seed
        var next: UInt64 = 1
        for step in 1...300 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let count = Int(state >> 60) % 6 + 1
            // Now and then a jump, as when records were dropped before they reached the ring.
            if state >> 40 & 0x3F == 0 { next += UInt64(state >> 50 & 0xF) + 1 }
            let batch = ringBatch(first: next, count: count)
            next += UInt64(count)
            ring.append(batch)
            model.append(batch)
            expectSameCounters(ring, model)
            if step % 60 == 0 { try expectIntact(ring, model) }
        }
        try expectIntact(ring, model)
    }
}
