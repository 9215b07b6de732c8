import Logging
import NIOCore
import NIOPosix
import TailgateCore
import TailgateRedis
#if canImport(Glibc)
import Glibc
#endif

/// The shared store: every run's records in Redis (one stream per run, one entry per batch), so that
/// several gateways see the same history. See `RedisKeys` for the layout and docs/REDIS.md for the
/// decisions.
///
/// - `append` never blocks: batches are queued and written by the store's own event loop, each as
///   `MULTI`, `XADD`, `EVAL` (the manifest's accounting), `EXEC`, pipelined, one pipeline in flight at a
///   time (batches gather while one is on the wire). While Redis is unreachable they stay queued, up to
///   `writeQueueBytes`; beyond it they are dropped for Redis (kept in memory only), counted in
///   `health().failedWrites`, and the store reports `failed`.
/// - Each write is idempotent (Redis refuses an `XADD` whose id is not above the stream's last, and
///   the script then accounts for nothing), so a pipeline cut by a lost connection is simply sent again
///   after reconnecting.
/// - The list of runs is mirrored in memory (`allRuns` is cheap), read from Redis at start and every
///   `maintenanceInterval`, and kept current by this store's own writes.
public final class RedisRunStore: RunStore {
    /// The settings the store was opened with.
    public let configuration: RedisStoreConfiguration
    /// The client (its own event loop, its own connections).
    public let client: RedisClient
    let keys: RedisKeys
    let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    let logger: Logger
    let state = Lock(RedisStoreState())
    let maintenance = Lock<RepeatedTask?>(nil)
    /// The writer leases held (see `RedisWriterLeases.swift`) and the task renewing them.
    let leaseTable = Lock(RedisLeaseTable())
    let leaseRenewal = Lock<RepeatedTask?>(nil)
    /// This gateway in the leases it holds: a random id unique to this store object, then
    /// `instanceLabel` (`3f9c0a1d7e2b4c55 127.0.0.1:8080, pid 4242`).
    public let instanceName: String
    /// The runs this gateway's mirrors follow (`follow`).
    let followers: RedisRunFollowers

    /// Opens the store: connects (in the background) and reads the list of runs, waiting for Redis up
    /// to its connect timeout. Redis being unreachable is not an error (the store reports `failed` and
    /// keeps trying); invalid settings are (`ConfigurationError`).
    public init(configuration: RedisStoreConfiguration, logger: Logger) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        keys = RedisKeys(prefix: configuration.keyPrefix)
        let random = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        instanceName = String(repeating: "0", count: 16 - random.count) + random + " " + configuration.instanceLabel
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        client = RedisClient(configuration: configuration.redis, eventLoop: loop, logger: logger)
        followers = RedisRunFollowers(client: client, keys: keys, loop: loop, logger: logger)
        do {
            try client.waitUntilConnected(within: configuration.redis.connectTimeout).wait()
            try refreshWhileLoading(within: configuration.redis.connectTimeout)
            logger.info("store opened", metadata: ["redis": "\(configuration.redis.displayAddress)", "runs": "\(state.withLock { $0.runs.count })"])
        } catch {
            logger.error("the store cannot reach Redis yet; it keeps trying",
                         metadata: ["redis": "\(configuration.redis.displayAddress)", "error": "\(error)"])
        }
        let storeLoop = loop
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: configuration.maintenanceInterval, delay: configuration.maintenanceInterval) {
            [weak self] _ in
            guard let self else { return storeLoop.makeSucceededVoidFuture() }
            return self.maintain().flatMapErrorThrowing { error in
                self.logger.debug("store maintenance failed", metadata: ["error": "\(error)"])
            }
        }
        maintenance.withLock { $0 = task }
        let renewal = loop.scheduleRepeatedTask(initialDelay: .nanoseconds(configuration.leaseTTL.nanoseconds / 3), delay: .nanoseconds(configuration.leaseTTL.nanoseconds / 3)) { [weak self] _ in
            self?.renewLeases()
        }
        leaseRenewal.withLock { $0 = renewal }
    }

    /// Reads the list of runs; while Redis is still loading its data set after a restart (it answers
    /// `LOADING …`), again every 50 ms, up to `timeout`.
    private func refreshWhileLoading(within timeout: TimeAmount) throws {
        let deadline = NIODeadline.now() + timeout
        while true {
            do {
                return try refresh().wait()
            } catch let error as RedisError where error.serverCode == "LOADING" && NIODeadline.now() < deadline {
                usleep(50_000)
            }
        }
    }

    deinit {
        // Dropped without `close()` (possibly on its own loop, by a last callback): stop without waiting.
        // After `close()` the loop is gone and the maintenance task with it.
        guard !state.withLock({ $0.closed }) else { return }
        maintenance.withLock { $0?.cancel() }
        leaseRenewal.withLock { $0?.cancel() }
        group.shutdownGracefully { _ in }
    }

    // MARK: Runs

    /// Every run, by worker, newest `startedAt` first within a worker (from memory).
    public func allRuns() -> [RunInfo] {
        let runs = state.withLock { state in state.runs.values.map(\.reportedInfo) }
        return runs.sorted { $0.id.worker != $1.id.worker ? $0.id.worker < $1.id.worker : $0.startedAt > $1.startedAt }
    }

    /// The runs of `worker`, newest first (from memory).
    public func runs(of worker: WorkerID) -> [RunInfo] {
        let runs = state.withLock { state in state.runs.values.filter { $0.info.id.worker == worker }.map(\.reportedInfo) }
        return runs.sorted { $0.startedAt > $1.startedAt }
    }

    /// One run (from memory), records still queued included.
    public func run(_ id: RunID) -> RunInfo? {
        state.withLock { state in state.runs[id]?.reportedInfo }
    }

    // MARK: Writes

    /// Starts a new run: known at once, its manifest written after what is queued before it.
    public func begin(_ info: RunInfo) {
        let wake = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.fencedRuns.remove(info.id)
            var fresh = info
            fresh.firstSeq = info.lastSeq + 1
            fresh.storedBytes = 0
            var entry = RedisRunEntry(info: fresh, isOpen: true)
            if let old = state.runs[info.id] {
                entry.pending = old.pending
                entry.waiters = old.waiters
                entry.queuedOperations = old.queuedOperations
                entry.processedThrough = old.processedThrough
            }
            state.runs[info.id] = entry
            return Self.enqueue(.begin(info), in: &state)
        }
        if wake { scheduleWrite() }
    }

    /// Queues `batch` for Redis (readers find it until Redis has acknowledged it); never blocks. Over
    /// `writeQueueBytes` the batch is dropped for Redis and the store reports `failed`.
    public func append(_ batch: Batch, to id: RunID, publisherOffsets: [String: UInt64]) {
        let bytes = batch.payload.readableBytes
        let limit = configuration.writeQueueBytes
        let (wake, failure, waiters) = state.withLock { state -> (Bool, String?, [RedisWriteWaiter]) in
            // Another gateway writes the run now (this one lost its writer lease).
            guard !state.closed, !state.fencedRuns.contains(id) else { return (false, nil, []) }
            if state.runs[id] == nil {
                state.runs[id] = RedisRunEntry(info: RunInfo(id: id, owner: .remote, startedAt: .now(), firstSeq: batch.firstSeq,
                                                             lastSeq: batch.firstSeq - 1), isOpen: true, registered: false)
            }
            guard state.queuedBytes + bytes <= limit else {
                let firstDrop = state.droppedRecords == 0
                state.failedWrites += 1
                state.droppedRecords += batch.count
                state.fail(state.cause ?? "it does not keep up", queueLimit: limit)
                return (false, firstDrop ? state.lastError : nil, state.takeAllWaiters())
            }
            state.runs[id]!.pending.append(batch)
            return (Self.enqueue(.append(id, batch, publisherOffsets), in: &state), nil, [])
        }
        for waiter in waiters { waiter.promise.succeed() }
        if let failure { logger.error("the store drops records for Redis", metadata: ["error": "\(failure)"]) }
        if wake { scheduleWrite() }
    }

    /// Ends a run: reported at once, written to its manifest after its queued batches.
    public func end(_ id: RunID, _ ending: RunEnding) {
        let wake = state.withLock { state -> Bool in
            guard !state.closed, state.runs[id] != nil, !state.fencedRuns.contains(id) else { return false }
            state.runs[id]!.info.status = ending.status
            state.runs[id]!.info.exitCode = ending.exitCode
            state.runs[id]!.info.reason = ending.reason
            state.runs[id]!.info.stoppedAt = ending.at
            state.runs[id]!.isOpen = false
            return Self.enqueue(.end(id, ending), in: &state)
        }
        if wake { scheduleWrite() }
    }

    /// Succeeds once Redis has acknowledged `id`'s records up to `seq`; at once when it has, when the
    /// store has failed or is closed, or when the run has nothing left to write.
    public func whenWritten(_ id: RunID, through seq: UInt64, on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let waiting = state.withLock { state -> Bool in
            guard !state.closed, !state.failed, let entry = state.runs[id], seq > entry.processedThrough else { return false }
            guard entry.isOpen || !entry.pending.isEmpty || entry.queuedOperations > 0 else { return false }
            state.runs[id]!.waiters.append(RedisWriteWaiter(seq: seq, promise: promise))
            return true
        }
        if !waiting { promise.succeed() }
        return promise.futureResult
    }

    /// Reads `id`'s records from `seq` on with `XRANGE` (batches not yet acknowledged are found too);
    /// completes on `loop`. Fails with `RedisError` when Redis cannot be asked and the records are not
    /// pending here.
    public func read(_ id: RunID, from seq: UInt64, through: UInt64, maxBytes: Int, on loop: EventLoop) -> EventLoopFuture<StoredChunk> {
        guard seq <= through else { return loop.makeSucceededFuture(.none) }
        // Taken before asking Redis: a batch acknowledged meanwhile is still found here.
        let (closed, pending) = state.withLock { state in (state.closed, state.runs[id]?.pending.filter { $0.lastSeq >= seq } ?? []) }
        guard !closed else { return loop.makeFailedFuture(RedisError.clientClosed) }
        let maxBytes = max(1, maxBytes)
        return client.send(RedisRunReader.command(keys: keys, id: id, from: seq)).flatMapThrowing { reply in
            RedisRunReader.chunk(entries: try RedisRunReader.entries(reply), pending: pending, from: seq, through: through, maxBytes: maxBytes)
        }.flatMapError { error in
            // Redis is out of reach: what is pending here can still be read.
            if let batch = pending.first, batch.firstSeq <= seq {
                return self.loop.makeSucceededFuture(.records(batch.slice(from: seq, through: through, maxBytes: maxBytes)))
            }
            return self.loop.makeFailedFuture(error)
        }.hop(to: loop)
    }

    /// Reopens a stored run to continue it: its manifest and publishers' offsets from Redis (with what
    /// is still queued here on top). Blocks for one round trip (also on a gateway's event loop, where the
    /// bus calls it for a publisher's request; never on the store's own). `nil` when the run is not
    /// stored or Redis cannot be asked.
    public func resume(_ id: RunID) -> ResumedRun? {
        guard !state.withLock({ $0.closed }) else { return nil }
        let replies = client.send([RedisCommand("HGETALL", [.string(keys.manifest(id))]), RedisCommand("HGETALL", [.string(keys.offsets(id))])])
        let stored: RunInfo?
        var offsets: [String: UInt64]
        do {
            // Not `wait()`: the bus resumes a run while a publisher's request is decided on a gateway loop.
            let timeout = configuration.redis.commandTimeout + .milliseconds(100)
            stored = RedisManifest.decode(try replies[0].blockingResult(within: timeout), id: id)
            offsets = RedisManifest.offsets(try replies[1].blockingResult(within: timeout))
        } catch {
            logger.error("cannot resume a run: Redis does not answer", metadata: ["run": "\(id)", "error": "\(error)"])
            return nil
        }
        return state.withLock { state -> ResumedRun? in
            guard var info = stored ?? state.runs[id]?.info else { return nil }
            if let entry = state.runs[id] {
                info = RunInfo(id: id, owner: info.owner, startedAt: info.startedAt, stoppedAt: info.stoppedAt, status: info.status,
                               exitCode: info.exitCode, reason: info.reason, firstSeq: info.firstSeq,
                               lastSeq: max(info.lastSeq, entry.reportedInfo.lastSeq), storedBytes: info.storedBytes)
            }
            for operation in state.queue {
                if case .append(let queuedID, _, let queuedOffsets) = operation, queuedID == id {
                    offsets.merge(queuedOffsets) { max($0, $1) }
                }
            }
            state.fencedRuns.remove(id)
            var entry = state.runs[id] ?? RedisRunEntry(info: info, isOpen: true)
            entry.info = info
            entry.isOpen = true
            // What Redis holds is written: a publisher answered after the resume waits for nothing older.
            let acknowledged = entry.pending.first.map { $0.firstSeq - 1 } ?? info.lastSeq
            entry.processedThrough = max(entry.processedThrough, min(info.lastSeq, acknowledged))
            state.runs[id] = entry
            return ResumedRun(info: info, publisherOffsets: offsets)
        }
    }

    // MARK: Other gateways' runs

    /// Several gateways write into Redis.
    public var isShared: Bool { true }

    /// `worker`'s newest run, read again from Redis first (one round trip, bounded by `leaseTimeout`;
    /// from memory when Redis does not answer). Not on the store's own loop.
    public func newestRun(of worker: WorkerID) -> RunInfo? {
        _ = try? refreshNewestRun(of: worker).blockingResult(within: configuration.leaseTimeout)
        return runs(of: worker).first
    }

    /// Follows a run another gateway writes (see `RedisRunFollowers`).
    public func follow(_ id: RunID, after seq: UInt64, on loop: EventLoop,
                       _ onEvent: @escaping @Sendable (FollowedRunEvent) -> Void) -> RunFollowing? {
        followers.follow(id, after: seq, on: loop, onEvent)
    }

    // MARK: Health and closing

    /// `ok`, or `failed` with the reason (Redis unreachable, a refused write, dropped batches).
    public func health() -> StoreHealth {
        let connected = client.isConnected
        let clientError = client.lastError
        return state.withLock { state in
            let failed = state.failed || !connected
            return StoreHealth(state: failed ? "failed" : "ok", lastError: failed ? (state.lastError ?? clientError) : nil,
                               failedWrites: state.failedWrites, storedBytes: state.runs.values.reduce(0) { $0 + $1.info.storedBytes },
                               runs: state.runs.count, writeQueue: state.runs.values.reduce(0) { $0 + $1.pending.count })
        }
    }

    /// Waits (up to `closeTimeout`, and not at all while Redis is out of reach) until what is queued is
    /// acknowledged, releases the writer leases held (other gateways may continue those runs at once),
    /// then closes the connections and stops the store's thread. Blocks; idempotent.
    public func close() {
        close(releasingWriters: true)
    }

    /// `close()`; with `releasingWriters` false the writer leases are left to expire after `leaseTTL`, as
    /// when the gateway crashes (tests use it to simulate one).
    public func close(releasingWriters: Bool) {
        let first = state.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        guard first else { return }
        maintenance.withLock { $0?.cancel() }
        leaseRenewal.withLock { $0?.cancel() }
        followers.close()
        // With Redis out of reach there is nothing to wait for: what is queued is given up at once.
        if client.isConnected { try? flush(within: configuration.closeTimeout).wait() }
        let (waiters, abandoned) = state.withLock { state -> ([RedisWriteWaiter], Int) in
            let abandoned = state.queue.filter { if case .append = $0 { return true } else { return false } }.count
            state.queue.removeAll()
            for flush in state.flushWaiters { flush.promise.fail(RedisError.clientClosed) }
            state.flushWaiters = []
            return (state.takeAllWaiters(), abandoned)
        }
        for waiter in waiters { waiter.promise.succeed() }
        if abandoned > 0 { logger.error("store closed with batches Redis never acknowledged", metadata: ["batches": "\(abandoned)"]) }
        closeLeases(releasing: releasingWriters)
        _ = try? client.close().wait()
        try? group.syncShutdownGracefully()
        logger.info("store closed", metadata: ["redis": "\(configuration.redis.displayAddress)"])
    }

    /// Succeeds once every operation queued before the call (begin, append, end) is acknowledged by
    /// Redis or given up; fails after `timeout` while Redis is out of reach.
    public func flush(within timeout: TimeAmount = .seconds(10)) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let done = state.withLock { state -> Bool in
            guard state.finishedOperations < state.enqueuedOperations else { return true }
            state.flushWaiters.append((state.enqueuedOperations, promise))
            return false
        }
        if done { promise.succeed() }
        let timer = loop.scheduleTask(in: timeout) { promise.fail(RedisError.notConnected(self.client.lastError ?? "Redis did not acknowledge in time")) }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }
}
