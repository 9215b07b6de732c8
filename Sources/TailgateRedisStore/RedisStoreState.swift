import NIOCore
import TailgateCore

/// Someone waiting for a run's records up to `seq` to be acknowledged by Redis.
struct RedisWriteWaiter: Sendable {
    var seq: UInt64
    var promise: EventLoopPromise<Void>
}

/// What the store knows of one run.
struct RedisRunEntry: Sendable {
    /// The manifest as last read from Redis, updated by this store's own writes.
    var info: RunInfo
    /// Begun or resumed by this store and not ended.
    var isOpen: Bool
    /// Whether the worker is known to be in the fleet registry (false for a run first seen through an
    /// `append`: its first write adds it).
    var registered = true
    /// Batches appended here and not yet acknowledged by Redis (queued or in flight), in seq order:
    /// reads find them here.
    var pending: [Batch] = []
    /// Operations of the run queued or in flight (begin, append, end).
    var queuedOperations = 0
    /// The last seq acknowledged (or given up on): waiters up to it are released.
    var processedThrough: UInt64 = 0
    var waiters: [RedisWriteWaiter] = []

    /// The run as reported: records still queued count.
    var reportedInfo: RunInfo {
        var reported = info
        if let last = pending.last, last.lastSeq > reported.lastSeq {
            if reported.storedRecords == 0, let first = pending.first { reported.firstSeq = first.firstSeq }
            reported.lastSeq = last.lastSeq
        }
        return reported
    }

    /// Takes the waiters whose seq is processed.
    mutating func takeWaiters(through seq: UInt64) -> [RedisWriteWaiter] {
        processedThrough = max(processedThrough, seq)
        let released = waiters.filter { $0.seq <= processedThrough }
        waiters.removeAll { $0.seq <= processedThrough }
        return released
    }

    /// Takes every waiter when nothing more of the run will be written.
    mutating func takeWaitersIfIdle() -> [RedisWriteWaiter] {
        guard !isOpen, pending.isEmpty, queuedOperations == 0 else { return [] }
        defer { waiters = [] }
        return waiters
    }
}

/// One write for Redis.
enum RedisWriteOperation: Sendable {
    case begin(RunInfo)
    case append(RunID, Batch, [String: UInt64])
    case end(RunID, RunEnding)

    var runID: RunID {
        switch self {
        case .begin(let info): return info.id
        case .append(let id, _, _), .end(let id, _): return id
        }
    }

    /// Bytes counted against `writeQueueBytes`.
    var bytes: Int {
        if case .append(_, let batch, _) = self { return batch.payload.readableBytes }
        return 0
    }
}

/// The store's shared state, behind one lock.
struct RedisStoreState: Sendable {
    var runs: [RunID: RedisRunEntry] = [:]
    /// Operations not yet sent, in order.
    var queue: [RedisWriteOperation] = []
    /// Bytes of batches queued or in flight.
    var queuedBytes = 0
    /// Whether a pipeline is in flight (the writer sends one at a time).
    var writing = false
    /// Whether a write pass is scheduled on the store's loop.
    var writeScheduled = false
    /// Set by a dropped batch or a refused write; cleared by the next acknowledged write.
    var failed = false
    /// What `health()` reports while failed: `cause`, after the count of dropped records if any.
    var lastError: String?
    /// Why Redis does not take the writes (the client's or Redis's text), without the drop count.
    var cause: String?
    /// Records dropped for Redis (the write queue was full) since the last acknowledged write: reported
    /// in `lastError` meanwhile, and in the log once Redis takes writes again.
    var droppedRecords = 0
    var failedWrites: UInt64 = 0
    var closed = false
    /// Operations ever queued, and ever finished (written or given up): `flush` waits for the second
    /// to reach the first as it stood.
    var enqueuedOperations: UInt64 = 0
    var finishedOperations: UInt64 = 0
    var flushWaiters: [(target: UInt64, promise: EventLoopPromise<Void>)] = []
    /// Runs this store may write no more: their worker's writer lease was lost (another gateway writes
    /// them). Appends and ends for them are ignored.
    var fencedRuns: Set<RunID> = []

    /// Marks the store failed because of `cause`; `lastError` says it, after the records dropped for
    /// Redis if any were (`12 records dropped for Redis: more than 64 MiB waited for it (…)`, worded as
    /// `tailgate run` reports its own overflow).
    mutating func fail(_ cause: String, queueLimit: Int) {
        failed = true
        self.cause = cause
        lastError = droppedRecords == 0 ? cause
            : "\(droppedRecords) record\(droppedRecords == 1 ? "" : "s") dropped for Redis: more than \(queueLimit >= 1 << 20 ? "\(queueLimit >> 20) MiB" : "\(queueLimit >> 10) KiB") waited for it (\(cause)); they are in memory only"
    }

    /// Clears the failure after an acknowledged write; the records dropped before it, if any.
    mutating func recover() -> Int {
        defer { droppedRecords = 0 }
        failed = false
        cause = nil
        lastError = nil
        return droppedRecords
    }

    /// Takes the flush waiters whose operations are all finished.
    mutating func takeFlushWaiters() -> [EventLoopPromise<Void>] {
        let done = flushWaiters.filter { $0.target <= finishedOperations }.map(\.promise)
        flushWaiters.removeAll { $0.target <= finishedOperations }
        return done
    }

    /// Takes every waiter of every run (the store failed or closed: nothing better can be promised).
    mutating func takeAllWaiters() -> [RedisWriteWaiter] {
        var all: [RedisWriteWaiter] = []
        for id in runs.keys where !runs[id]!.waiters.isEmpty {
            all += runs[id]!.waiters
            runs[id]!.waiters = []
        }
        return all
    }

    /// Forgets an operation that was written or given up (`written`: acknowledged by Redis).
    mutating func finish(_ operation: RedisWriteOperation, written: Bool) -> [RedisWriteWaiter] {
        let id = operation.runID
        queuedBytes -= operation.bytes
        finishedOperations += 1
        guard runs[id] != nil else { return [] }
        runs[id]!.queuedOperations -= 1
        var released: [RedisWriteWaiter] = []
        if case .append(_, let batch, _) = operation {
            if let index = runs[id]!.pending.firstIndex(where: { $0 === batch }) { runs[id]!.pending.remove(at: index) }
            if written && batch.lastSeq > runs[id]!.info.lastSeq {
                if runs[id]!.info.storedRecords == 0 { runs[id]!.info.firstSeq = batch.firstSeq }
                runs[id]!.info.lastSeq = batch.lastSeq
                runs[id]!.info.storedBytes += batch.recordBytes + batch.count
            }
            released += runs[id]!.takeWaiters(through: batch.lastSeq)
        }
        released += runs[id]!.takeWaitersIfIdle()
        return released
    }
}
