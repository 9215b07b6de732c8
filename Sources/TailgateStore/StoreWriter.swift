import Dispatch
import Foundation
import Logging
import NIOCore
import TailgateCore

/// The store's one writer thread: takes what is queued, writes it with few large `pwrite` calls,
/// forces it to disk as the fsync policy says, applies retention, and tells waiters and readers.
///
/// Every file of a run being written is touched by this thread alone; readers only read the bytes
/// it has published as written.
final class StoreWriter {
    /// The most batch bytes taken from the queue in one cycle, so that waiters hear back regularly.
    static let cycleBytes = 8 << 20

    private let shared: StoreShared
    private let layout: StoreLayout
    private let configuration: StoreConfiguration
    private let logger: Logger
    private var appenders: [RunID: RunAppender] = [:]
    /// Ended runs whose last manifest could not be written: tried again at each maintenance.
    private var unwrittenManifests: [RunID: RunAppender] = [:]
    private var buffer = ByteBufferAllocator().buffer(capacity: RunAppender.writeChunkBytes + (64 << 10))
    private var cycle = WriteCycle()
    private var groups: [RunID: [RunAppender.Item]] = [:]
    private var groupOrder: [RunID] = []
    private var nextSync: NIODeadline
    private var nextMaintenance: NIODeadline

    private init(shared: StoreShared, layout: StoreLayout, configuration: StoreConfiguration, logger: Logger) {
        self.shared = shared
        self.layout = layout
        self.configuration = configuration
        self.logger = logger
        nextSync = .now() + configuration.fsyncInterval
        nextMaintenance = .now() + configuration.maintenanceInterval
    }

    /// Starts the writer thread; `stopped` is signalled when it has finished.
    static func start(shared: StoreShared, layout: StoreLayout, configuration: StoreConfiguration, logger: Logger,
                      stopped: DispatchSemaphore) {
        let thread = Thread {
            StoreWriter(shared: shared, layout: layout, configuration: configuration, logger: logger).run()
            stopped.signal()
        }
        thread.name = "tailgate-store-writer"
        thread.start()
    }

    private func run() {
        shared.state.withLock { $0.coalesceBytes = configuration.coalesceBytes }
        while true {
            if let operations = takeOperations() {
                if !process(operations) { return }
            } else if waitForWork() {
                coalesce()
            }
            runTimers()
        }
    }

    /// Woken by new work after a quiet spell: lets more batches gather for `coalesceDelay`, unless
    /// something urgent (a waiter, a flush, a resumed run, enough bytes) is or becomes queued.
    private func coalesce() {
        guard configuration.coalesceDelay > .zero else { return }
        let gather = shared.state.withLock { state -> Bool in
            let urgent = state.queuedBytes >= state.coalesceBytes || state.runs.values.contains { !$0.waiters.isEmpty }
                || state.queue.contains { if case .append = $0 { return false } else { return true } }
            state.writerCoalescing = !urgent
            return !urgent
        }
        guard gather else { return }
        _ = shared.wakeup.wait(timeout: .now() + .nanoseconds(Int(configuration.coalesceDelay.nanoseconds)))
        shared.state.withLock { $0.writerCoalescing = false }
    }

    /// Takes up to `cycleBytes` of queued operations, or says there are none (the writer then sleeps
    /// until an enqueue wakes it).
    private func takeOperations() -> [WriteOperation]? {
        shared.state.withLock { state -> [WriteOperation]? in
            guard !state.queue.isEmpty else {
                state.writerIdle = true
                return nil
            }
            var taken: [WriteOperation] = []
            var bytes = 0
            while bytes < Self.cycleBytes, let operation = state.queue.popFirst() {
                if let id = operation.runID { state.runs[id]?.queuedOperations -= 1 }
                taken.append(operation)
                switch operation {
                case .append(_, let batch, _):
                    state.queuedBatches -= 1
                    bytes += batch.payload.readableBytes
                case .resume, .flush, .maintain, .close:
                    // Work after these stays queued (and counted) until they are done: retention must
                    // not take a run whose operations were taken but not yet carried out.
                    return taken
                case .begin, .end:
                    break
                }
            }
            return taken
        }
    }

    /// Sleeps until work is queued or a timer is due; `true` when woken by work.
    private func waitForWork() -> Bool {
        var wake = nextMaintenance
        if configuration.fsync == .interval { wake = min(wake, nextSync) }
        let nanoseconds = max(0, (wake - .now()).nanoseconds)
        return shared.wakeup.wait(timeout: .now() + .nanoseconds(Int(clamping: nanoseconds))) == .success
    }

    private func runTimers() {
        let now = NIODeadline.now()
        if configuration.fsync == .interval, now >= nextSync {
            for appender in appenders.values { appender.syncIfDirty(cycle: cycle) }
            nextSync = now + configuration.fsyncInterval
            finishCycle()
        }
        if now >= nextMaintenance {
            retryManifests()
            applyRetention()
            nextMaintenance = now + configuration.maintenanceInterval
        }
    }

    /// Writes again the manifests that could not be written (the disk failed meanwhile).
    private func retryManifests() {
        for appender in Array(appenders.values) + Array(unwrittenManifests.values) where appender.hasUnwrittenManifest {
            appender.retryManifest(cycle: cycle)
        }
        unwrittenManifests = unwrittenManifests.filter { $0.value.hasUnwrittenManifest }
        finishCycle()
    }

    /// Processes one cycle's operations; `false` once the store is closed.
    private func process(_ operations: [WriteOperation]) -> Bool {
        for operation in operations {
            switch operation {
            case .append(let id, let batch, let offsets):
                if groups[id] == nil { groupOrder.append(id) }
                groups[id, default: []].append(RunAppender.Item(batch: batch, offsets: offsets))
            case .begin(let info):
                flush(info.id)
                begin(info)
            case .end(let id, let ending):
                flush(id)
                if let appender = appender(for: id) {
                    appender.end(ending, cycle: cycle)
                    appenders[id] = nil
                    if appender.hasUnwrittenManifest { unwrittenManifests[id] = appender }
                } else {
                    cycle.releaseWaiters(of: id)
                }
            case .resume(let id, let reply):
                finishCycle()
                reply.send(resume(id))
            case .flush(let reply):
                finishCycle()
                reply.send(())
            case .maintain(let reply):
                finishCycle()
                applyRetention()
                reply.send(())
            case .close(let reply, let abandon):
                if abandon {
                    for appender in appenders.values { appender.abandon() }
                } else {
                    flushAll()
                    for appender in appenders.values { appender.close(cycle: cycle) }
                    retryManifests()
                    finishCycle()
                }
                appenders = [:]
                let waiters = shared.state.withLock { $0.takeAllWaiters() }
                for waiter in waiters { waiter.promise.succeed() }
                reply.send(())
                return false
            }
        }
        finishCycle()
        return true
    }

    private func begin(_ info: RunInfo) {
        if appenders[info.id] != nil {
            logger.warning("a run was begun twice; continuing it", metadata: ["run": "\(info.id)"])
            return
        }
        let stored = (try? RunFiles.list(layout.runPath(info.id)))?.segments.isEmpty == false
        if stored {
            logger.warning("a run was begun again; continuing its stored records", metadata: ["run": "\(info.id)"])
            _ = appender(for: info.id)
        } else {
            let appender = RunAppender.begin(info, layout: layout, configuration: configuration, logger: logger, cycle: cycle)
            appenders[info.id] = appender
            cycle.touched(info.id, appender.snapshot)
        }
    }

    /// The appender of `id`, reopening the stored run (or starting it) when none is open. A run that
    /// cannot be opened is logged; `countsAsWriteFailure` also marks the store failed (records are lost).
    private func appender(for id: RunID, countsAsWriteFailure: Bool = true) -> RunAppender? {
        if let appender = appenders[id] { return appender }
        unwrittenManifests[id] = nil  // reopened from its files: its manifest is written anew
        let known = shared.state.withLock { $0.runs[id]?.info }
        do {
            let files = try RunFiles.list(layout.runPath(id))
            let appender: RunAppender
            if files.segments.isEmpty && !files.hasManifest {
                let info = known ?? RunInfo(id: id, owner: .remote, startedAt: .now())
                appender = RunAppender.begin(info, layout: layout, configuration: configuration, logger: logger, cycle: cycle)
            } else {
                appender = try RunAppender.reopen(id, known: known, layout: layout, configuration: configuration, logger: logger, cycle: cycle)
            }
            appenders[id] = appender
            cycle.touched(id, appender.snapshot)
            return appender
        } catch {
            logger.error("cannot open a stored run", metadata: ["run": "\(id)", "error": "\(error)"])
            if countsAsWriteFailure { cycle.failed(error, batches: 0) }
            return nil
        }
    }

    private func resume(_ id: RunID) -> ResumedRun? {
        guard shared.state.withLock({ $0.runs[id] != nil }) else { return nil }
        guard let appender = appender(for: id, countsAsWriteFailure: false) else { return nil }
        let info = appender.info
        finishCycle()
        shared.state.withLock { state in
            state.runs[id]?.info = info
            state.runs[id]?.isOpen = true
        }
        return ResumedRun(info: info, publisherOffsets: appender.offsets)
    }

    /// Writes the batches gathered for `id`.
    private func flush(_ id: RunID) {
        guard let items = groups.removeValue(forKey: id), !items.isEmpty else { return }
        guard let appender = appender(for: id) else {
            cycle.failed(.corrupt(path: layout.runPath(id), reason: "the run cannot be opened"), batches: items.count)
            for item in items { cycle.processed(item.batch, of: id) }
            return
        }
        appender.append(items, buffer: &buffer, cycle: cycle)
    }

    private func flushAll() {
        for id in groupOrder { flush(id) }
        groupOrder.removeAll(keepingCapacity: true)
    }

    /// Writes what is gathered, forces it to disk under `always`, and publishes the cycle: readers see
    /// the new bytes, pending batches go, waiters succeed, the health changes.
    private func finishCycle() {
        flushAll()
        if configuration.fsync == .always {
            for id in cycle.runs.keys { appenders[id]?.syncIfDirty(cycle: cycle) }
        }
        guard !cycle.isEmpty else { return }
        let finished = cycle
        cycle = WriteCycle()
        let (waiters, change) = shared.state.withLock { state in state.publish(finished) }
        for waiter in waiters { waiter.promise.succeed() }
        switch change {
        case .failed(let error):
            logger.error("the store cannot write; records are kept in memory only until it can", metadata: [
                "error": "\(error)", "directory": "\(layout.root)"])
        case .recovered(let failedWrites):
            logger.notice("the store writes again", metadata: ["failed_writes": "\(failedWrites)", "directory": "\(layout.root)"])
        case nil:
            break
        }
    }

    private func applyRetention() {
        guard configuration.retainAge != nil || configuration.retainBytes != nil else { return }
        let writing = Set(appenders.keys)
        let plan = shared.state.withLock { state in
            RetentionPlan(deleting: &state, configuration: configuration, now: .now(), writing: writing)
        }
        for waiter in plan.releasedWaiters { waiter.promise.succeed() }
        for id in plan.deletedRuns {
            unwrittenManifests[id] = nil
            do {
                try FileSystem.removeTree(layout.runPath(id))
                FileSystem.removeIfEmpty(layout.workerPath(id.worker))
                logger.info("retention deleted a run", metadata: ["run": "\(id)"])
            } catch {
                logger.error("retention cannot delete a run", metadata: ["run": "\(id)", "error": "\(error)"])
            }
        }
        guard let budget = configuration.retainBytes else { return }
        var total = plan.remainingBytes
        while total > budget {
            let candidates = appenders.values.filter { $0.sealedSegmentCount > 0 }
            guard let largest = candidates.max(by: { $0.info.storedBytes < $1.info.storedBytes }),
                  let freed = largest.removeOldestSegment() else { break }
            total -= freed
            cycle.touched(largest.id, largest.snapshot)
            logger.info("retention deleted the oldest segment of a running run", metadata: [
                "run": "\(largest.id)", "first_seq": "\(largest.info.firstSeq)"])
        }
        finishCycle()
    }
}
