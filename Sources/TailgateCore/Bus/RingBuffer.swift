import NIOCore

/// The records a worker keeps for replay: the newest ones, bounded by count and by bytes.
///
/// Records are held as the `Batch`es that were sent live, so replay and export reuse the bytes that
/// went on the wire. Eviction is per record: `firstSeq` moves one record at a time, and a batch's
/// storage is freed once all of its records are evicted. Small batches that are no longer among the
/// newest are merged into larger ones so that a replay travels in few, well-compressible messages.
///
/// Not thread-safe: `Worker` guards it with a lock.
public struct RingBuffer: Sendable {
    /// The most records kept.
    public let maxRecords: Int
    /// The most record bytes kept (the JSON of the records themselves): `capacityBytes`, or less while
    /// the bus's memory budget for all rings is short (`setByteBudget`).
    public private(set) var maxBytes: Int
    /// The most record bytes kept when the bus has memory to spare.
    public let capacityBytes: Int

    private var batches = CircularBuffer<Batch>(initialCapacity: 64)
    /// The first seq still held; `lastSeq + 1` when the ring is empty.
    public private(set) var firstSeq: UInt64 = 1
    /// The last seq ever appended; 0 before the first.
    public private(set) var lastSeq: UInt64 = 0
    /// Bytes of the records held.
    public private(set) var recordBytes = 0
    /// How many trailing batches have not been considered for merging yet.
    private var unmergedCount = 0

    /// How many of the newest batches are never merged (subscribers a little behind resume on them).
    static let recentBatches = 32
    /// The size a merged batch aims for.
    static let mergedBatchBytes = 64 * 1024

    /// Makes an empty ring whose first record will have `nextSeq` (a run continued after a restart
    /// goes on from its stored seqs).
    public init(maxRecords: Int, maxBytes: Int, nextSeq: UInt64 = 1) {
        precondition(maxRecords > 0 && maxBytes > 0 && nextSeq > 0)
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.capacityBytes = maxBytes
        self.firstSeq = nextSeq
        self.lastSeq = nextSeq - 1
    }

    /// Keeps at most `budget` record bytes (never more than `capacityBytes`; `nil` lifts the budget),
    /// evicting the oldest records now if the ring holds more. A subscriber behind them gets a `gap`.
    public mutating func setByteBudget(_ budget: Int?) {
        maxBytes = max(1, min(capacityBytes, budget ?? capacityBytes))
        evict()
    }

    /// How many records the ring holds.
    public var count: Int { Int(lastSeq + 1 - firstSeq) }
    /// Whether the ring holds no record.
    public var isEmpty: Bool { count == 0 }
    /// How many batches the ring holds.
    public var batchCount: Int { batches.count }

    /// Appends a batch. Its first seq must follow `lastSeq`; a larger jump (records dropped before they
    /// reached the ring) empties the ring up to the batch.
    public mutating func append(_ batch: Batch) {
        precondition(batch.firstSeq > lastSeq, "batch \(batch.firstSeq) does not follow \(lastSeq)")
        if batch.firstSeq != lastSeq + 1 {
            batches.removeAll(keepingCapacity: true)
            unmergedCount = 0
            recordBytes = 0
            lastSeq = batch.firstSeq - 1
            firstSeq = batch.firstSeq
        }
        if isEmpty { firstSeq = batch.firstSeq }
        batches.append(batch)
        lastSeq = batch.lastSeq
        recordBytes += batch.recordBytes
        unmergedCount += 1
        evict()
        mergeOldSmallBatches()
    }

    private mutating func evict() {
        while !isEmpty && (count > maxRecords || recordBytes > maxBytes) {
            let front = batches.first!
            if count - maxRecords >= Int(front.lastSeq - firstSeq + 1) {
                dropFront()
                continue
            }
            recordBytes -= front.recordSize(firstSeq)
            firstSeq += 1
            if firstSeq > front.lastSeq {
                batches.removeFirst()
                if unmergedCount > batches.count { unmergedCount = batches.count }
            }
        }
    }

    private mutating func dropFront() {
        let front = batches.removeFirst()
        recordBytes -= front.recordBytes(from: firstSeq)
        firstSeq = front.lastSeq + 1
        if unmergedCount > batches.count { unmergedCount = batches.count }
    }

    private mutating func mergeOldSmallBatches() {
        guard unmergedCount > Self.recentBatches * 2 else { return }
        // Merge the older half of the unmerged run, in pieces of about `mergedBatchBytes`.
        let runStart = batches.count - unmergedCount
        let runEnd = batches.count - Self.recentBatches
        var merged: [Batch] = []
        var group: [Batch] = []
        var groupBytes = 0
        func flush() {
            guard !group.isEmpty else { return }
            merged.append(group.count == 1 ? group[0] : Batch.merging(group, from: max(group[0].firstSeq, firstSeq)))
            group.removeAll()
            groupBytes = 0
        }
        for index in runStart..<runEnd {
            let batch = batches[batches.index(batches.startIndex, offsetBy: index)]
            if groupBytes + batch.payload.readableBytes > Self.mergedBatchBytes { flush() }
            group.append(batch)
            groupBytes += batch.payload.readableBytes
        }
        flush()
        var rebuilt = CircularBuffer<Batch>(initialCapacity: batches.count)
        for index in 0..<runStart { rebuilt.append(batches[batches.index(batches.startIndex, offsetBy: index)]) }
        rebuilt.append(contentsOf: merged)
        for index in runEnd..<batches.count { rebuilt.append(batches[batches.index(batches.startIndex, offsetBy: index)]) }
        batches = rebuilt
        unmergedCount = Self.recentBatches
    }

    /// The batch holding `seq`, or `nil` when `seq` is not in the ring.
    public func batch(containing seq: UInt64) -> Batch? {
        guard seq >= firstSeq, seq <= lastSeq else { return nil }
        var low = 0
        var high = batches.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let batch = batches[batches.index(batches.startIndex, offsetBy: middle)]
            if seq < batch.firstSeq {
                high = middle - 1
            } else if seq > batch.lastSeq {
                low = middle + 1
            } else {
                return batch
            }
        }
        return nil
    }

    /// Calls `body` with each held record from `seq` on, in order, until it returns `false`.
    public func forEachRecord(from seq: UInt64, _ body: (UInt64, ByteBuffer) -> Bool) {
        var seq = max(seq, firstSeq)
        while seq <= lastSeq, let batch = batch(containing: seq) {
            while seq <= batch.lastSeq {
                if !body(seq, batch.record(seq)) { return }
                seq += 1
            }
        }
    }
}
