import Dispatch
import NIOCore
import TailgateCore

/// One segment of a run as readers see it.
struct SegmentState: Sendable, Equatable {
    /// The seq of its first record (its file name).
    var firstSeq: UInt64
    /// Bytes written and complete: readers never read beyond them.
    var bytes: Int
    /// Its sparse index once loaded (always, for the segment being written).
    var index: SparseIndex?
}

/// A caller of `whenWritten` waiting for the writer.
struct WriteWaiter: Sendable {
    var seq: UInt64
    var promise: EventLoopPromise<Void>
}

/// What the store knows about one run, shared by the callers, the writer and the readers.
struct RunEntry: Sendable {
    /// As the manifest says (a run open when the gateway stopped still says `running`).
    var info: RunInfo
    /// Begun or resumed by this process and not ended.
    var isOpen: Bool
    /// The run's segments, oldest first; `nil` until a read or the writer has listed them.
    var segments: [SegmentState]?
    /// Batches appended and not yet written (or given up), in seq order: reads find them here.
    var pending = CircularBuffer<Batch>()
    /// Operations of this run in the write queue (retention leaves such a run alone).
    var queuedOperations = 0
    /// The last seq the writer has written (or given up on).
    var processedThrough: UInt64 = 0
    /// Callers of `whenWritten` for seqs not yet processed.
    var waiters: [WriteWaiter] = []

    init(info: RunInfo, isOpen: Bool, segments: [SegmentState]? = nil) {
        self.info = info
        self.isOpen = isOpen
        self.segments = segments
        self.processedThrough = info.lastSeq
    }

    /// The run as callers see it: a run that says `running` but is not open here was interrupted, and
    /// records still queued count as the run's.
    var reportedInfo: RunInfo {
        var reported = info
        if reported.status == .running && !isOpen { reported.status = .interrupted }
        if let last = pending.last, last.lastSeq > reported.lastSeq {
            if reported.storedRecords == 0, let first = pending.first { reported.firstSeq = first.firstSeq }
            reported.lastSeq = last.lastSeq
        }
        return reported
    }
}

/// An operation queued for the writer thread.
enum WriteOperation: Sendable {
    case begin(RunInfo)
    case append(RunID, Batch, [String: UInt64])
    case end(RunID, RunEnding)
    case resume(RunID, WriterReply<ResumedRun?>)
    /// Answers once everything queued before it is written (or given up).
    case flush(WriterReply<Void>)
    case maintain(WriterReply<Void>)
    /// Writes what is queued and stops; `abandon`: stops at once, as a crash would (tests, `deinit`).
    case close(WriterReply<Void>, abandon: Bool)

    /// The run the operation is about, if it is about one.
    var runID: RunID? {
        switch self {
        case .begin(let info): info.id
        case .append(let id, _, _), .end(let id, _), .resume(let id, _): id
        case .flush, .maintain, .close: nil
        }
    }
}

/// A one-shot answer from the writer thread to a thread blocked waiting for it.
final class WriterReply<Value: Sendable>: Sendable {
    private let value = Lock<Value?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init() {}

    /// Hands `result` to the waiting thread.
    func send(_ result: Value) {
        value.withLock { $0 = result }
        done.signal()
    }

    /// Blocks until the writer has answered.
    func wait() -> Value {
        done.wait()
        return value.withLock { $0! }
    }
}

/// Whether the store can write, and what went wrong when it cannot.
struct WriteHealth: Sendable {
    var failed = false
    var lastError: String?
    var failedWrites: UInt64 = 0
}

/// Everything shared between threads, behind one lock: the runs, the write queue and the health.
struct StoreState: Sendable {
    var runs: [RunID: RunEntry]
    var queue = CircularBuffer<WriteOperation>()
    /// Batches in `queue`.
    var queuedBatches = 0
    /// Bytes of the batches appended and not yet processed by the writer (queued or being written).
    var queuedBytes = 0
    /// The writer waits for `StoreShared.wakeup`: whoever queues work signals it.
    var writerIdle = false
    /// The writer lets batches gather (`StoreConfiguration.coalesceDelay`): only work that someone
    /// waits for, or `coalesceBytes` queued, signals it.
    var writerCoalescing = false
    /// Queued bytes that end the writer's coalescing delay.
    var coalesceBytes = Int.max
    var health = WriteHealth()
    /// `close()` was called (or the store was dropped): operations are refused.
    var closed = false

    /// Queues `operation`; says whether the writer must be woken.
    mutating func enqueue(_ operation: WriteOperation) -> Bool {
        queue.append(operation)
        if let id = operation.runID { runs[id]?.queuedOperations += 1 }
        var urgent = true
        if case .append = operation {
            queuedBatches += 1
            urgent = queuedBytes >= coalesceBytes
        }
        return wakesWriter(urgent: urgent)
    }

    /// Whether new work must wake the writer: when it sleeps, and while it lets batches gather when
    /// the work is `urgent` (someone waits for it). Clears the writer's state accordingly.
    mutating func wakesWriter(urgent: Bool) -> Bool {
        if writerIdle {
            writerIdle = false
            return true
        }
        if writerCoalescing && urgent {
            writerCoalescing = false
            return true
        }
        return false
    }

    /// Every waiter of every run, removed (to succeed them: the store failed or closed).
    mutating func takeAllWaiters() -> [WriteWaiter] {
        var all: [WriteWaiter] = []
        for id in runs.keys where !(runs[id]?.waiters.isEmpty ?? true) {
            all.append(contentsOf: runs[id]!.waiters)
            runs[id]!.waiters = []
        }
        return all
    }
}

/// The lock-protected state and the writer's wake-up signal.
final class StoreShared: Sendable {
    let state: Lock<StoreState>
    let wakeup = DispatchSemaphore(value: 0)

    init(runs: [RunID: RunEntry]) {
        state = Lock(StoreState(runs: runs))
    }

    /// Queues `operation` for the writer and wakes it if it sleeps; `false` when the store is closed.
    @discardableResult
    func enqueue(_ operation: WriteOperation) -> Bool {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed else { return (false, false) }
            return (true, state.enqueue(operation))
        }
        if wake { wakeup.signal() }
        return accepted
    }
}
