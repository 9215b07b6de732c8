import Dispatch
import Logging
import NIOCore
import NIOPosix
import TailgateCore

/// The embedded history store: every run's records in segment files under one local directory
/// (`--data-dir`), with a manifest per run.
///
/// - Writes are queued (`append` never blocks and never fails) and written in order by one writer
///   thread with large `pwrite` calls; `whenWritten` tells when they are on disk (forced to it under
///   `FsyncPolicy.always`).
/// - Reads run on the store's own two reader threads and complete on the caller's loop; records still
///   queued for the writer are found too.
/// - A failing disk never stops the caller: the store reports `failed` in `health()`, drops what it
///   cannot write (readers get a `gap` for it), and writes again once the disk takes writes. So does a
///   disk slower than the publishers, once `writeQueueBytes` wait to be written.
/// - Starting reads only the manifests, so it takes about the same time whatever the history's size;
///   segments are opened when a run is read or continued.
///
/// See `StoreLayout` for the files, `FrameEncoder` for the segment format, `SparseIndex` for the index
/// and `RunManifest` for the manifest.
public final class FileRunStore: RunStore {
    /// The settings the store was opened with.
    public let configuration: StoreConfiguration
    private let layout: StoreLayout
    private let logger: Logger
    let shared: StoreShared
    private let reader: RunReader
    private let readers: NIOThreadPool
    private let writerStopped = DispatchSemaphore(value: 0)
    private let directoryLock: DirectoryLock

    /// Opens the store in `configuration.directory`, creating it when missing, and starts its writer
    /// and reader threads. Throws `StoreError` when the directory cannot be created, opened or written
    /// (or another store uses it), and `ConfigurationError` for invalid settings.
    public init(configuration: StoreConfiguration, logger: Logger) throws {
        try configuration.validate()
        var root = configuration.directory
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.configuration = configuration
        self.layout = StoreLayout(root: root)
        self.logger = logger
        try Self.prepare(layout)
        directoryLock = try DirectoryLock(directory: root)
        let runs = HistoryScan.scan(layout, logger: logger)
        shared = StoreShared(runs: runs)
        reader = RunReader(shared: shared, layout: layout, logger: logger)
        readers = NIOThreadPool(numberOfThreads: 2)
        readers.start()
        StoreWriter.start(shared: shared, layout: layout, configuration: configuration, logger: logger, stopped: writerStopped)
        logger.info("store opened", metadata: ["directory": "\(root)", "runs": "\(runs.count)", "fsync": "\(configuration.fsync.rawValue)"])
    }

    deinit {
        // Dropped without `close()`: stop like a crash would (what is queued is not written).
        stop(abandon: true)
    }

    /// Creates the directory and its `runs` folder, and checks that files can be created in it.
    private static func prepare(_ layout: StoreLayout) throws(StoreError) {
        do {
            try FileSystem.makeDirectories(layout.runsPath)
            let probe = layout.root + "/.write-probe"
            try FileSystem.replace(probe, with: [0x0A], sync: false)
            try FileSystem.removeFile(probe)
        } catch {
            throw .directoryUnusable(path: layout.root, reason: error.description)
        }
    }

    /// Every stored run, by worker, newest `startedAt` first within a worker (from memory: no file is read).
    public func allRuns() -> [RunInfo] {
        let runs = shared.state.withLock { state in state.runs.values.map(\.reportedInfo) }
        return runs.sorted { $0.id.worker != $1.id.worker ? $0.id.worker < $1.id.worker : $0.startedAt > $1.startedAt }
    }

    /// The runs of `worker`, newest first (from memory).
    public func runs(of worker: WorkerID) -> [RunInfo] {
        let runs = shared.state.withLock { state in state.runs.values.filter { $0.info.id.worker == worker }.map(\.reportedInfo) }
        return runs.sorted { $0.startedAt > $1.startedAt }
    }

    /// One run: a run open when the gateway stopped says `interrupted`; records still queued count.
    public func run(_ id: RunID) -> RunInfo? {
        shared.state.withLock { state in state.runs[id]?.reportedInfo }
    }

    /// Starts a new run: known at once, its folder and manifest written by the writer.
    public func begin(_ info: RunInfo) {
        let wake = shared.state.withLock { state -> Bool in
            guard !state.closed else { return false }
            var fresh = info
            fresh.firstSeq = info.lastSeq + 1
            fresh.storedBytes = 0
            var entry = RunEntry(info: fresh, isOpen: true, segments: state.runs[info.id]?.segments ?? [])
            if let old = state.runs[info.id] {
                entry.pending = old.pending
                entry.waiters = old.waiters
                entry.queuedOperations = old.queuedOperations
            }
            state.runs[info.id] = entry
            return state.enqueue(.begin(info))
        }
        if wake { shared.wakeup.signal() }
    }

    /// Reopens a stored run to continue it (blocks while the writer recovers it: off the event loops).
    /// `nil` when the run is not stored or its files cannot be read (logged).
    public func resume(_ id: RunID) -> ResumedRun? {
        let reply = WriterReply<ResumedRun?>()
        guard shared.enqueue(.resume(id, reply)) else { return nil }
        return reply.wait()
    }

    /// Queues `batch` for the writer (and for readers until it is written); never blocks on the disk.
    public func append(_ batch: Batch, to id: RunID, publisherOffsets: [String: UInt64]) {
        let bytes = batch.payload.readableBytes
        let limit = configuration.writeQueueBytes
        let root = layout.root
        let (wake, failure, waiters) = shared.state.withLock { state -> (Bool, String?, [WriteWaiter]) in
            guard !state.closed else { return (false, nil, []) }
            if state.runs[id] == nil {
                state.runs[id] = RunEntry(info: RunInfo(id: id, owner: .remote, startedAt: .now()), isOpen: true, segments: nil)
            }
            guard state.queuedBytes + bytes <= limit else {
                let wasFailed = state.health.failed
                state.health.failed = true
                state.health.failedWrites += 1
                state.health.lastError = "more than \(limit >> 20) MiB wait to be written: the disk of \(root) does not keep up"
                return (false, wasFailed ? nil : state.health.lastError, state.takeAllWaiters())
            }
            state.queuedBytes += bytes
            state.runs[id]!.pending.append(batch)
            return (state.enqueue(.append(id, batch, publisherOffsets)), nil, [])
        }
        if wake { shared.wakeup.signal() }
        for waiter in waiters { waiter.promise.succeed() }
        if let failure { logger.error("the store drops records for the disk", metadata: ["error": "\(failure)"]) }
    }

    /// Ends a run: reported at once, written to its manifest after its queued batches.
    public func end(_ id: RunID, _ ending: RunEnding) {
        let wake = shared.state.withLock { state -> Bool in
            guard !state.closed, state.runs[id] != nil else { return false }
            state.runs[id]!.info.status = ending.status
            state.runs[id]!.info.exitCode = ending.exitCode
            state.runs[id]!.info.reason = ending.reason
            state.runs[id]!.info.stoppedAt = ending.at
            state.runs[id]!.isOpen = false
            return state.enqueue(.end(id, ending))
        }
        if wake { shared.wakeup.signal() }
    }

    /// Succeeds once the writer has written `id`'s records up to `seq` (and fsynced them under
    /// `always`); at once when they are, when the store has failed or is closed, or when the run has
    /// nothing left to write; otherwise at the latest when the run ends or the store closes.
    public func whenWritten(_ id: RunID, through seq: UInt64, on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let (waiting, wake) = shared.state.withLock { state -> (Bool, Bool) in
            guard !state.closed, !state.health.failed, let entry = state.runs[id], seq > entry.processedThrough else { return (false, false) }
            // A run with nothing left to write will never reach `seq`.
            guard entry.isOpen || !entry.pending.isEmpty || entry.queuedOperations > 0 else { return (false, false) }
            state.runs[id]!.waiters.append(WriteWaiter(seq: seq, promise: promise))
            // Someone waits: a writer letting batches gather writes now.
            return (true, state.writerCoalescing && state.wakesWriter(urgent: true))
        }
        if wake { shared.wakeup.signal() }
        if !waiting { promise.succeed() }
        return promise.futureResult
    }

    /// Reads `id`'s records from `seq` on, on the store's reader threads; fails with a `StoreError`
    /// when the run's files cannot be read, or after `close()`.
    public func read(_ id: RunID, from seq: UInt64, through: UInt64, maxBytes: Int, on loop: EventLoop) -> EventLoopFuture<StoredChunk> {
        guard !shared.state.withLock({ $0.closed }) else { return loop.makeFailedFuture(StoreError.closed) }
        let reader = reader
        return readers.runIfActive(eventLoop: loop) {
            try reader.read(id, from: seq, through: through, maxBytes: max(1, maxBytes))
        }
    }

    /// `ok` or `failed`, with the last write error while failed and the store's counters.
    public func health() -> StoreHealth {
        shared.state.withLock { state in
            StoreHealth(state: state.health.failed ? "failed" : "ok", lastError: state.health.failed ? state.health.lastError : nil,
                        failedWrites: state.health.failedWrites, storedBytes: state.runs.values.reduce(0) { $0 + $1.info.storedBytes },
                        runs: state.runs.count, writeQueue: state.queuedBatches)
        }
    }

    /// Blocks until everything appended before the call is written, or given up if the disk fails
    /// (unlike `whenWritten`, which answers at once while the store is failed).
    public func flush() {
        let reply = WriterReply<Void>()
        guard shared.enqueue(.flush(reply)) else { return }
        reply.wait()
    }

    /// Applies retention now (the writer does it every `maintenanceInterval` anyway), after writing
    /// what is queued; returns when done.
    public func applyRetention() {
        let reply = WriterReply<Void>()
        guard shared.enqueue(.maintain(reply)) else { return }
        reply.wait()
    }

    /// Writes what is queued, forces it to disk (unless `never`), closes the files and stops the
    /// threads; blocks until done. Idempotent. Runs still open stay `running` in their manifests.
    public func close() {
        stop(abandon: false)
    }

    /// Stops the writer: after writing what is queued (`close`), or at once as a crash would (`abandon`,
    /// used when the store is dropped without being closed). Idempotent.
    func stop(abandon: Bool) {
        let reply = shared.state.withLock { state -> WriterReply<Void>? in
            guard !state.closed else { return nil }
            state.closed = true
            if abandon {
                state.queue.removeAll()
                state.queuedBatches = 0
            }
            let reply = WriterReply<Void>()
            _ = state.enqueue(.close(reply, abandon: abandon))
            return reply
        }
        guard let reply else { return }
        shared.wakeup.signal()
        reply.wait()
        writerStopped.wait()
        let readersStopped = DispatchSemaphore(value: 0)
        readers.shutdownGracefully { _ in readersStopped.signal() }
        readersStopped.wait()
        directoryLock.release()
        if !abandon { logger.info("store closed", metadata: ["directory": "\(layout.root)"]) }
    }
}
