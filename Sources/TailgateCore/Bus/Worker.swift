import NIOCore
import Synchronization

/// Whether a worker still publishes.
public enum WorkerState: String, Sendable {
    case running
    case stopped
}

/// Who publishes into a worker: code in this process, or another process over HTTP.
public enum WorkerOwner: String, Sendable {
    case inProcess = "in-process"
    case remote
}

/// A point-in-time view of a worker, for the API and for `hello`.
public struct WorkerSnapshot: Sendable {
    public var id: WorkerID
    public var state: WorkerState
    public var owner: WorkerOwner
    /// Identifies this incarnation of the worker: it changes when an id is registered anew
    /// (or the gateway restarts), which tells a client that seqs started over.
    public var epoch: String
    public var firstSeq: UInt64
    /// The newest seq; seqs start at 1, so this is also how many records were ever published.
    public var lastSeq: UInt64
    public var ringRecords: Int
    public var ringBytes: Int
    /// Records that never reached the ring: publishers outran the worker's loop by more than the ring
    /// holds, and the oldest queued records made way (subscribers see them as a `gap`).
    public var droppedBeforeRing: UInt64
    public var subscribers: Int
    public var startedAt: Timestamp
    public var stoppedAt: Timestamp?
    /// The run's status (`running` until it stops).
    public var status: RunStatus
    /// The exit status of the run's program, when its publisher gave one.
    public var exitCode: Int?
    /// Why it stopped; `nil` while it runs.
    public var reason: String?

    /// A stored run (no live worker) seen as a worker: stopped unless it runs, no ring, no subscriber.
    public init(run: RunInfo) {
        id = run.id.worker
        state = run.status == .running ? .running : .stopped
        owner = run.owner
        epoch = run.id.epoch
        firstSeq = run.firstSeq
        lastSeq = run.lastSeq
        ringRecords = 0
        ringBytes = 0
        droppedBeforeRing = 0
        subscribers = 0
        startedAt = run.startedAt
        stoppedAt = run.stoppedAt
        status = run.status
        exitCode = run.exitCode
        reason = run.reason
    }

    init(id: WorkerID, state: WorkerState, owner: WorkerOwner, epoch: String, firstSeq: UInt64, lastSeq: UInt64,
         ringRecords: Int, ringBytes: Int, droppedBeforeRing: UInt64, subscribers: Int, startedAt: Timestamp,
         stoppedAt: Timestamp?, status: RunStatus, exitCode: Int?, reason: String?) {
        self.id = id
        self.state = state
        self.owner = owner
        self.epoch = epoch
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.ringRecords = ringRecords
        self.ringBytes = ringBytes
        self.droppedBeforeRing = droppedBeforeRing
        self.subscribers = subscribers
        self.startedAt = startedAt
        self.stoppedAt = stoppedAt
        self.status = status
        self.exitCode = exitCode
        self.reason = reason
    }
}

/// One worker's stream: where its records are published, numbered, kept and fanned out.
///
/// `publish` is cheap, thread-safe and never blocks on subscribers: it stamps the record, gives it the
/// next seq and queues it. At most one drain per event-loop tick then encodes everything queued into one
/// `Batch`, appends it to the ring and offers it to the subscribers.
public final class Worker: Sendable {
    /// The worker's id.
    public let id: WorkerID
    /// Who publishes into it.
    public let owner: WorkerOwner
    /// This incarnation's identity (see `WorkerSnapshot.epoch`).
    public let epoch: String
    /// When the worker was registered.
    public let startedAt: Timestamp
    /// The loop that drains, encodes and appends.
    public let loop: EventLoop
    /// The worker's subscribers.
    public let fanOut = FanOut()
    /// Where the run's records are kept beyond the ring; `nil` with `--memory-only`.
    public let store: RunStore?
    /// The first seq of the run still stored when the worker was made (1 for a new run).
    private let storedFirstSeq: UInt64

    private let limits: WorkerLimits
    // Internal, not private: a mirror's code (`WorkerMirror.swift`) reaches them too.
    let ingress: Lock<Ingress>
    let ring: Lock<RingState>
    let drains: DrainQueue
    private let onStop: @Sendable (Worker) -> Void
    /// The following of the run while the worker mirrors it, and since when nobody has watched the
    /// mirror (see `WorkerMirror.swift`).
    let following = Lock<RunFollowing?>(nil)
    let unwatchedSince = Lock<NIODeadline?>(nil)
    let handedBack = Lock(false)

    struct PendingRecord: Sendable {
        var record: LogRecord
        var seq: UInt64
        var timestamp: Timestamp

        /// An entry holding nothing that is counted by reference (its strings are empty).
        static let placeholder = PendingRecord(record: LogRecord(message: ""), seq: 0, timestamp: Timestamp(microseconds: 0))
    }

    struct Ingress: ~Copyable {
        /// Records waiting for the next drain; the first `skipped` of them were dropped.
        var pending: [PendingRecord] = []
        var skipped = 0
        /// An empty array with capacity, swapped in at each drain so that queuing allocates nothing.
        var spare: [PendingRecord] = []
        var pendingBytes = 0
        var nextSeq: UInt64 = 1
        var drain = DrainState.idle
        var stopRequested = false
        /// Why and how the run ends, for the subscribers' `end` and the store.
        var ending = RunEnding(status: .stopped, reason: Worker.defaultStopReason)
        /// The highest line offset taken from each publisher that numbers its lines (exactly-once
        /// publishing), and those changed since the last drain (stored with its last batch).
        var publisherOffsets: [String: UInt64] = [:]
        var changedOffsets: [String: UInt64] = [:]
        /// Publishers waiting for the queue to shrink (`whenQueueBelow`): the next drain releases them.
        var queueWaiters: [EventLoopPromise<Void>] = []
        /// Set while the worker mirrors a run another gateway writes: nothing is published here.
        var mirroring = false
        /// A mirror that became the run's writer drains its first records only once its ring holds the
        /// run up to this seq (what the previous writer stored), so that seqs reach subscribers in order.
        var holdThrough: UInt64 = 0

        /// Accounts for `count` records of `bytes` just appended with seqs from `nextSeq`: advances
        /// the seq, drops what overflows, and schedules a drain. Returns the records left queued and
        /// whether a drain must be requested (not when one is already scheduled or running).
        mutating func admit(count: Int, bytes: Int, limits: WorkerLimits) -> (queued: Int, requestDrain: Bool) {
            nextSeq += UInt64(count)
            pendingBytes += bytes
            let queued = dropOverflow(limits)
            return (queued, scheduleDrain())
        }

        /// When the loop is not keeping up, the oldest queued records leave as the ring would evict
        /// them (counted as skipped). Returns how many records stay queued.
        mutating func dropOverflow(_ limits: WorkerLimits) -> Int {
            while pending.count - skipped > limits.queuedRecords || pendingBytes > limits.queuedBytes {
                pendingBytes -= pending[skipped].record.estimatedSize
                skipped += 1
                if skipped > 1024 && skipped * 2 > pending.count {
                    pending.removeFirst(skipped)
                    skipped = 0
                }
            }
            return pending.count - skipped
        }

        /// Moves an idle worker to `scheduled`; returns whether it was idle (a drain must be requested).
        mutating func scheduleDrain() -> Bool {
            guard drain == .idle else { return false }
            drain = .scheduled
            return true
        }
    }

    /// Where the worker's drain stands. Drains run in the sweeps of the loop's `DrainQueue`, which keep
    /// `minimumDrainInterval` between a sweep and the next so that the loop polls its sockets in between.
    enum DrainState {
        case idle
        case scheduled
        case draining
    }

    struct RingState: Sendable {
        var buffer: RingBuffer
        var stoppedAt: Timestamp?
        var droppedBeforeRing: UInt64 = 0

        /// Appends a batch whose first seq is after the ring's last; seqs skipped in between count as
        /// records that never reached the ring.
        mutating func append(_ batch: Batch) {
            if batch.firstSeq > buffer.lastSeq + 1 {
                droppedBeforeRing += batch.firstSeq - buffer.lastSeq - 1
            }
            buffer.append(batch)
        }
    }

    /// A worker drained on `drains.loop`: a new run (`resumed == nil`) or a stored run continued.
    /// With `mirroring`, the worker serves `resumed`, a run another gateway writes: its ring is filled
    /// by `followed(_:)` from the store, not by publishing.
    init(id: WorkerID, owner: WorkerOwner, resumed: ResumedRun? = nil, mirroring: Bool = false, store: RunStore?, limits: WorkerLimits,
         drains: DrainQueue, onStop: @escaping @Sendable (Worker) -> Void) {
        self.id = id
        self.owner = owner
        self.limits = limits
        self.loop = drains.loop
        self.drains = drains
        self.onStop = onStop
        self.store = store
        var ingress = Ingress()
        ingress.mirroring = mirroring
        if let resumed {
            startedAt = resumed.info.startedAt
            epoch = resumed.info.id.epoch
            storedFirstSeq = resumed.info.firstSeq
            ingress.nextSeq = resumed.info.lastSeq + 1
            ingress.publisherOffsets = resumed.publisherOffsets
        } else {
            startedAt = Timestamp.now()
            epoch = Self.makeEpoch()
            storedFirstSeq = 1
        }
        let nextSeq = ingress.nextSeq
        self.ingress = Lock(ingress)
        ring = Lock(RingState(buffer: RingBuffer(maxRecords: limits.ringRecords, maxBytes: limits.ringBytes, nextSeq: nextSeq)))
        remotePublishers.withLock { $0.lastChange = drains.loop.now }
    }

    /// A new run's epoch: random, base 36.
    static func makeEpoch() -> String { String(UInt64.random(in: 1...UInt64.max), radix: 36) }

    /// This run's identity.
    public var runID: RunID { RunID(worker: id, epoch: epoch) }

    /// Publishes a record. Returns `false` (and drops the record) only when the worker has been stopped.
    ///
    /// Never blocks on subscribers and never fails because of them. Callable from any thread.
    @discardableResult
    public func publish(_ record: consuming LogRecord) -> Bool {
        enqueue(record) != nil
    }

    /// Publishes a record and says which seq it got and how many records wait for the next drain
    /// (publishers that can slow down, such as HTTP ingest, use it to apply backpressure).
    /// `nil` when the worker has been stopped.
    public func enqueue(_ record: consuming LogRecord) -> (seq: UInt64, queued: Int)? {
        let timestamp = record.timestamp ?? Timestamp.now()
        let size = record.estimatedSize
        var entry = PendingRecord(record: record, seq: 0, timestamp: timestamp)
        let outcome: (seq: UInt64, queued: Int, requestDrain: Bool)? = ingress.withLock { state in
            guard !state.stopRequested, !state.mirroring else { return nil }
            let seq = state.nextSeq
            entry.seq = seq
            // Moved in by a swap, not copied: a copy would retain and later release every string.
            state.pending.append(PendingRecord.placeholder)
            swap(&state.pending[state.pending.count - 1], &entry)
            let (queued, requestDrain) = state.admit(count: 1, bytes: size, limits: limits)
            return (seq, queued, requestDrain)
        }
        guard let outcome else { return nil }
        if outcome.requestDrain { drains.request(self) }
        return (outcome.seq, outcome.queued)
    }

    /// Publishes `records` in order under one lock (HTTP ingest queues each read's lines this way).
    /// They are moved out, leaving `records` empty. Returns the first one's seq and how many records
    /// wait for the next drain, or `nil` (nothing published) when the worker has been stopped.
    @discardableResult
    public func enqueue(contentsOf records: inout [LogRecord]) -> (firstSeq: UInt64, queued: Int)? {
        guard !records.isEmpty, let outcome = enqueue(contentsOf: &records, lines: nil) else { return nil }
        return (outcome.firstSeq, outcome.queued)
    }

    /// Lines of a publisher that numbers them (exactly-once publishing, docs/PROTOCOL.md): the offset of
    /// each record handed over, and the offset of the last line the publisher's input has reached
    /// (lines rejected after the last record count too).
    public struct NumberedLines: Sendable {
        public var publisher: String
        public var offsets: [UInt64]
        public var lastOffset: UInt64

        public init(publisher: String, offsets: [UInt64], lastOffset: UInt64) {
            self.publisher = publisher
            self.offsets = offsets
            self.lastOffset = lastOffset
        }
    }

    /// What `enqueue(contentsOf:lines:)` did.
    public struct Enqueued: Sendable {
        /// The first published record's seq (the next seq when none was published).
        public var firstSeq: UInt64
        /// Records published.
        public var published: Int
        /// Records skipped because the publisher's offset had passed them already.
        public var duplicates: Int
        /// Records waiting for the next drain.
        public var queued: Int
        /// The publisher's offset afterwards (0 without `lines`).
        public var offset: UInt64
    }

    /// Publishes `records` in order under one lock, moving them out and leaving `records` empty. With
    /// `lines`, a record whose offset the publisher has reached already is skipped as a duplicate, and
    /// the publisher's offset moves to `lines.lastOffset`. `nil` (nothing published) when the worker
    /// has been stopped.
    public func enqueue(contentsOf records: inout [LogRecord], lines: NumberedLines?) -> Enqueued? {
        let now = Timestamp.now()
        let outcome: (Enqueued, Bool)? = ingress.withLock { state in
            guard !state.stopRequested, !state.mirroring else { return nil }
            let first = state.nextSeq
            var previous: UInt64 = 0
            if let lines { previous = state.publisherOffsets[lines.publisher] ?? 0 }
            state.pending.reserveCapacity(state.pending.count + records.count)
            var published = 0
            var size = 0
            for index in records.indices {
                if let lines, lines.offsets[index] <= previous { continue }
                let timestamp = records[index].timestamp ?? now
                size += records[index].estimatedSize
                state.pending.append(PendingRecord(record: PendingRecord.placeholder.record, seq: first + UInt64(published), timestamp: timestamp))
                swap(&state.pending[state.pending.count - 1].record, &records[index])
                published += 1
            }
            var offset: UInt64 = 0
            if let lines {
                offset = max(previous, lines.lastOffset)
                if offset != previous {
                    state.publisherOffsets[lines.publisher] = offset
                    state.changedOffsets[lines.publisher] = offset
                }
            }
            let (queued, requestDrain) = published > 0 ? state.admit(count: published, bytes: size, limits: limits)
                                                       : (state.pending.count - state.skipped, false)
            return (Enqueued(firstSeq: first, published: published, duplicates: records.count - published, queued: queued, offset: offset), requestDrain)
        }
        records.removeAll(keepingCapacity: true)
        guard let (enqueued, requestDrain) = outcome else { return nil }
        if requestDrain { drains.request(self) }
        return enqueued
    }

    /// The seq of the last record published so far (0: none).
    public var lastPublishedSeq: UInt64 { ingress.withLock { $0.nextSeq - 1 } }

    /// The highest line offset taken from `publisher` in this run (0: none).
    public func publisherOffset(_ publisher: String) -> UInt64 {
        ingress.withLock { $0.publisherOffsets[publisher] ?? 0 }
    }

    /// Records waiting for the next drain.
    public var queuedCount: Int { ingress.withLock { $0.pending.count - $0.skipped } }

    /// Succeeds on `loop` once fewer than `count` records wait for the drain: at once when that is
    /// already so, else when the next drain takes the queue. Publishers that can slow down (HTTP
    /// ingest) stop reading their input until then; publishing itself never waits.
    public func whenQueueBelow(_ count: Int, on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = ingress.withLock { state -> EventLoopPromise<Void>? in
            // A queue this long always has a drain scheduled or running, which releases the waiter.
            guard state.pending.count - state.skipped >= count else { return nil }
            let promise = loop.makePromise(of: Void.self)
            state.queueWaiters.append(promise)
            return promise
        }
        return promise?.futureResult ?? loop.makeSucceededVoidFuture()
    }

    /// Publishes a record built from its fields.
    @discardableResult
    public func publish(
        _ level: LogLevel, _ message: String, loggerName: String = "", module: String = "",
        funcName: String = "", lineNo: Int = 0, metadata: [String: String]? = nil
    ) -> Bool {
        publish(LogRecord(level: level, message: message, loggerName: loggerName, module: module,
                          funcName: funcName, lineNo: lineNo, metadata: metadata))
    }

    /// The `end` reason of a worker stopped by its publisher.
    public static let defaultStopReason = "worker stopped"

    /// Stops the worker: records already published are still delivered, then subscribers get `end`
    /// with `reason`, and the run is stored as ended with `status`. The ring stays readable for the
    /// bus's retention time. Stopping twice does nothing.
    public func stop(reason: String = Worker.defaultStopReason, status: RunStatus = .stopped, exitCode: Int? = nil) {
        let requestDrain = ingress.withLock { state -> Bool in
            guard !state.stopRequested else { return false }
            state.stopRequested = true
            state.ending = RunEnding(status: status, exitCode: exitCode, reason: reason)
            return state.scheduleDrain()
        }
        if requestDrain { drains.request(self) }
    }

    /// Whether `stop()` has been called.
    public var isStopping: Bool { ingress.withLock { $0.stopRequested } }

    /// Why the worker stopped (or stops), for `end`.
    public var stopReason: String { ingress.withLock { $0.ending.reason } }

    /// How the run ends (meaningful once `isStopping`).
    public var ending: RunEnding { ingress.withLock { $0.ending } }

    // MARK: Publishers in other processes

    /// Open connections publishing into this worker, and when the last one opened or closed (on the
    /// loop's clock). Records reach a remote worker only through such a connection, so a worker with none
    /// open since a deadline has had no record since then either: the publish path stamps nothing.
    let remotePublishers = Lock<(connections: Int, lastChange: NIODeadline)>((0, .uptimeNanoseconds(0)))

    /// A publisher connection opened (`true`) or closed (`false`).
    public func publisherConnection(opened: Bool) {
        let now = loop.now
        remotePublishers.withLock { state in
            state.connections += opened ? 1 : -1
            state.lastChange = now
        }
    }

    /// Whether no publisher has been connected since `deadline`.
    func isIdle(since deadline: NIODeadline) -> Bool {
        remotePublishers.withLock { $0.connections <= 0 && $0.lastChange < deadline }
    }

    /// When the worker stopped, `nil` while it runs.
    var stoppedAt: Timestamp? { ring.withLock { $0.stoppedAt } }

    /// Keeps at most `budget` record bytes in the ring (`nil`: its own limit), evicting the oldest now.
    func setRingBudget(_ budget: Int?) {
        ring.withLock { $0.buffer.setByteBudget(budget) }
    }

    /// Encodes what is queued into batches, appends them to the ring and offers them to the
    /// subscribers. Called by the loop's `DrainQueue`, once per request.
    func drain() {
        loop.assertInEventLoop()
        var records: [PendingRecord] = []
        var waiters: [EventLoopPromise<Void>] = []
        var offsets: [String: UInt64] = [:]
        let taken: (Int, Int)? = ingress.withLock { state in
            // A mirror just promoted to writer waits for the previous writer's last batches first.
            if state.holdThrough > 0 { return nil }
            state.drain = .draining
            defer { state.skipped = 0; state.pendingBytes = 0 }
            swap(&records, &state.pending)
            swap(&state.pending, &state.spare)
            if !state.queueWaiters.isEmpty { swap(&waiters, &state.queueWaiters) }
            if !state.changedOffsets.isEmpty { swap(&offsets, &state.changedOffsets) }
            return (state.skipped, state.pendingBytes)
        }
        guard let (skipped, estimatedBytes) = taken else {
            if holdsDrain() { return }
            return drain()
        }
        // The queue is empty now: whoever waited for it to shrink may go on.
        for waiter in waiters { waiter.succeed() }
        // Encode in pieces of bounded size: one batch per tick unless the tick was very large. Each
        // buffer is sized from the records' estimated size: no regrowth (and copy) for a big tick, no
        // spare kilobytes kept in the ring for a small one.
        // (The slack covers the encoder's worst-case reservation for the last record.)
        let capacity = min(estimatedBytes, limits.maxBatchBytes + 4096) + 1024
        var index = skipped
        while index < records.count {
            var builder = BatchBuilder(firstSeq: records[index].seq, capacity: capacity)
            while index < records.count, builder.count < limits.maxBatchRecords, builder.byteCount < limits.maxBatchBytes {
                builder.append(records[index].record, timestamp: records[index].timestamp)
                index += 1
            }
            // The publishers' offsets are stored with the tick's last batch: they cover its records.
            if let batch = builder.finish() { append(batch, publisherOffsets: index == records.count ? offsets : [:]) }
        }
        let offsetsUnstored = index == skipped && !offsets.isEmpty
        records.removeAll(keepingCapacity: true)
        let (stop, requestDrain) = ingress.withLock { state -> (Bool, Bool) in
            if state.spare.capacity == 0 { swap(&state.spare, &records) }
            // Offsets that moved without a record (rejected lines) wait for the next batch.
            if offsetsUnstored { state.changedOffsets.merge(offsets) { newer, _ in newer } }
            state.drain = .idle
            if state.pending.count > state.skipped {
                return (false, state.scheduleDrain())
            }
            return (state.stopRequested, false)
        }
        if requestDrain { drains.request(self) }
        if stop { finish() }
    }

    private func append(_ batch: Batch, publisherOffsets: [String: UInt64]) {
        ring.withLock { $0.append(batch) }
        store?.append(batch, to: runID, publisherOffsets: publisherOffsets)
        fanOut.deliver(batch)
    }

    private func finish() {
        let stoppedAt = Timestamp.now()
        let mirrored = ingress.withLock { $0.mirroring }
        if mirrored { stopFollowing() }
        let first = ring.withLock { state -> Bool in
            guard state.stoppedAt == nil else { return false }
            state.stoppedAt = stoppedAt
            return true
        }
        guard first else { return }
        let waiters = stopWaiters.withLock { state in
            state.stopped = true
            return state.promises
        }
        if let store, !mirrored {
            var ending = self.ending
            ending.at = stoppedAt
            store.end(runID, ending)
        }
        fanOut.deliverEnd()
        onStop(self)
        for waiter in waiters { waiter.succeed() }
    }

    private let stopWaiters = Lock<(stopped: Bool, promises: [EventLoopPromise<Void>])>((false, []))

    /// Succeeds once the worker has stopped: its last records drained and its run ended.
    public func whenStopped() -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let stopped = stopWaiters.withLock { state -> Bool in
            if !state.stopped { state.promises.append(promise) }
            return state.stopped
        }
        if stopped { promise.succeed() }
        return promise.futureResult
    }

    /// Succeeds on `loop` once the run's records up to `seq` are stored (at once without a store).
    public func whenStored(through seq: UInt64, on loop: EventLoop) -> EventLoopFuture<Void> {
        store?.whenWritten(runID, through: seq, on: loop) ?? loop.makeSucceededVoidFuture()
    }

    /// Reads the ring under its lock. Keep `body` short: the worker's loop waits for it.
    public func withRing<T>(_ body: (borrowing RingBuffer, _ stoppedAt: Timestamp?) throws -> T) rethrows -> T {
        try ring.withLock { try body($0.buffer, $0.stoppedAt) }
    }

    /// Where a reader of the ring stands.
    public enum ReadPosition: Sendable {
        /// Records `from...to` are gone: send a `gap` and continue at `to + 1`.
        case gap(from: UInt64, to: UInt64)
        /// The batch holding the next seq.
        case batch(Batch)
        /// The next seq left the ring but the run is stored: read `from...through` from the store.
        case stored(from: UInt64, through: UInt64)
        /// Nothing more for now; `ended` when the worker stopped and this was its last record.
        case caughtUp(ended: Bool)
    }

    /// What a reader whose next seq is `seq` should be sent next.
    public func read(at seq: UInt64) -> ReadPosition {
        ring.withLock { state in
            let buffer = state.buffer
            if seq < buffer.firstSeq {
                return store != nil ? .stored(from: seq, through: buffer.firstSeq - 1) : .gap(from: seq, to: buffer.firstSeq - 1)
            }
            if seq > buffer.lastSeq { return .caughtUp(ended: state.stoppedAt != nil) }
            return .batch(buffer.batch(containing: seq)!)
        }
    }

    /// The worker's current state.
    public func snapshot() -> WorkerSnapshot {
        let (ringFirstSeq, lastSeq, records, bytes, stoppedAt, dropped) = ring.withLock {
            ($0.buffer.firstSeq, $0.buffer.lastSeq, $0.buffer.count, $0.buffer.recordBytes, $0.stoppedAt, $0.droppedBeforeRing)
        }
        let ending = stoppedAt == nil ? nil : self.ending
        return WorkerSnapshot(
            id: id, state: stoppedAt == nil ? .running : .stopped, owner: owner, epoch: epoch,
            firstSeq: store == nil ? ringFirstSeq : min(storedFirstSeq, ringFirstSeq), lastSeq: lastSeq,
            ringRecords: records, ringBytes: bytes, droppedBeforeRing: dropped,
            subscribers: fanOut.subscriberCount, startedAt: startedAt, stoppedAt: stoppedAt,
            status: ending?.status ?? .running, exitCode: ending?.exitCode, reason: ending?.reason)
    }
}

/// The bounds of one worker's memory.
public struct WorkerLimits: Sendable {
    /// The most records the ring keeps.
    public var ringRecords: Int
    /// The most record bytes the ring keeps.
    public var ringBytes: Int
    /// The most records in one live batch (a very busy tick is sent as several).
    public var maxBatchRecords: Int
    /// The most bytes in one live batch.
    public var maxBatchBytes: Int
    /// The shortest time between the end of one sweep of a loop's drains and the start of the next:
    /// the loop polls its sockets in between. Records arriving after a quiet spell are drained at once, and
    /// so are those arriving once the loop has finished the last sweep's tick when the bus counts ticks
    /// (`LogBus(loopTicks:)`).
    public var minimumDrainInterval: TimeAmount

    public init(ringRecords: Int = 10_000, ringBytes: Int = 8 << 20, maxBatchRecords: Int = 4096, maxBatchBytes: Int = 256 << 10,
                minimumDrainInterval: TimeAmount = .microseconds(200)) {
        self.ringRecords = ringRecords
        self.ringBytes = ringBytes
        self.maxBatchRecords = maxBatchRecords
        self.maxBatchBytes = maxBatchBytes
        self.minimumDrainInterval = minimumDrainInterval
    }

    /// The most records queued for a drain before the oldest make way: the ring's size, and never
    /// fewer than what HTTP publishers may have queued when they are paused (8,192, plus one read), so
    /// that a publisher that can be slowed down never loses a record however small the ring.
    public var queuedRecords: Int { max(ringRecords, 20_000) }
    /// The most bytes queued for a drain (twice the ring's, at least 16 MiB).
    public var queuedBytes: Int { max(ringBytes * 2, 16 << 20) }

    /// The problems of these limits, named `prefix` + property.
    public func check(prefix: String = "") -> ConfigurationCheck {
        var check = ConfigurationCheck(prefix: prefix)
        check.require(ringRecords, in: 1...100_000_000, "ringRecords")
        check.require(ringBytes, in: 1024...(1 << 40), "ringBytes")
        check.require(maxBatchRecords, atLeast: 1, "maxBatchRecords")
        check.require(maxBatchBytes, atLeast: 1024, "maxBatchBytes")
        check.require(minimumDrainInterval >= .zero, "minimumDrainInterval", "must not be negative")
        return check
    }

    /// Throws every problem of these limits.
    public func validate() throws(ConfigurationError) {
        try check().throwIfAny()
    }
}
