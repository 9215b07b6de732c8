import TailgateCore

/// What one run looks like on disk after the writer's latest operation on it.
struct RunSnapshot: Sendable {
    var segments: [SegmentState]
    var firstSeq: UInt64
    var lastSeq: UInt64
    var storedBytes: Int
}

/// What the writer did during one cycle (the operations it took from the queue at once), published to
/// the shared state in one step: readers see a batch either queued or on disk, never neither.
final class WriteCycle {
    /// Per run: how many of its pending batches were processed, and how far.
    struct RunProgress {
        var processedBatches = 0
        var processedBytes = 0
        var processedThrough: UInt64 = 0
        var snapshot: RunSnapshot?
        /// The run ended or the store is closing: its remaining waiters succeed.
        var releaseWaiters = false
    }

    private(set) var runs: [RunID: RunProgress] = [:]
    /// Batches that could not be written.
    private(set) var failedBatches = 0
    /// The last write error of the cycle.
    private(set) var lastError: StoreError?
    /// Whether the last write of the cycle failed (`false` when it succeeded, `nil` when nothing was written).
    private(set) var endsFailed: Bool?

    var isEmpty: Bool { runs.isEmpty && endsFailed == nil }

    /// A batch of `id` was processed (written or given up).
    func processed(_ batch: Batch, of id: RunID) {
        runs[id, default: RunProgress()].processedBatches += 1
        runs[id, default: RunProgress()].processedBytes += batch.payload.readableBytes
        runs[id]!.processedThrough = max(runs[id]!.processedThrough, batch.lastSeq)
    }

    /// The run's files changed.
    func touched(_ id: RunID, _ snapshot: RunSnapshot) {
        runs[id, default: RunProgress()].snapshot = snapshot
    }

    /// Waiters of `id` need not wait any longer.
    func releaseWaiters(of id: RunID) {
        runs[id, default: RunProgress()].releaseWaiters = true
    }

    /// A write succeeded.
    func succeeded() {
        endsFailed = false
    }

    /// A write failed; `batches` of records could not be stored.
    func failed(_ error: StoreError, batches: Int) {
        failedBatches += batches
        lastError = error
        endsFailed = true
    }
}

/// How the store's health changed when a cycle was published.
enum HealthChange {
    case failed(String)
    case recovered(failedWrites: UInt64)
}

extension StoreState {
    /// Applies what the writer did in `cycle`; returns the waiters to succeed and how the health changed.
    mutating func publish(_ cycle: WriteCycle) -> ([WriteWaiter], HealthChange?) {
        var released: [WriteWaiter] = []
        for (id, progress) in cycle.runs {
            queuedBytes -= progress.processedBytes
            guard var entry = runs[id] else { continue }
            for _ in 0..<min(progress.processedBatches, entry.pending.count) { entry.pending.removeFirst() }
            entry.processedThrough = max(entry.processedThrough, progress.processedThrough)
            if let snapshot = progress.snapshot {
                entry.processedThrough = max(entry.processedThrough, snapshot.lastSeq)
                entry.segments = Self.merge(snapshot.segments, keepingIndexesOf: entry.segments)
                entry.info.firstSeq = snapshot.firstSeq
                entry.info.lastSeq = snapshot.lastSeq
                entry.info.storedBytes = snapshot.storedBytes
            }
            if progress.releaseWaiters {
                released += entry.waiters
                entry.waiters = []
            } else if !entry.waiters.isEmpty {
                let through = entry.processedThrough
                released += entry.waiters.filter { $0.seq <= through }
                entry.waiters.removeAll { $0.seq <= through }
            }
            runs[id] = entry
        }
        let wasFailed = health.failed
        health.failedWrites += UInt64(cycle.failedBatches)
        if let endsFailed = cycle.endsFailed {
            health.failed = endsFailed
            health.lastError = endsFailed ? cycle.lastError?.description : nil
        }
        if health.failed { released += takeAllWaiters() }
        let change: HealthChange? = switch (wasFailed, health.failed) {
        case (false, true): .failed(health.lastError ?? "unknown error")
        case (true, false): .recovered(failedWrites: health.failedWrites)
        default: nil
        }
        return (released, change)
    }

    /// The writer's view of a run's segments, keeping the indexes readers have loaded.
    private static func merge(_ segments: [SegmentState], keepingIndexesOf old: [SegmentState]?) -> [SegmentState] {
        guard let old, !old.isEmpty else { return segments }
        var loaded: [UInt64: SparseIndex] = [:]
        for segment in old { if let index = segment.index { loaded[segment.firstSeq] = index } }
        return segments.map { segment in
            var segment = segment
            if segment.index == nil { segment.index = loaded[segment.firstSeq] }
            return segment
        }
    }
}
