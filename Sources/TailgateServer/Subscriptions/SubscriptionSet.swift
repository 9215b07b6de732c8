import NIOCore
import TailgateCore

/// Where a connection's subscriptions write: the connection. Lives on the connection's loop.
protocol SubscriptionOutput: AnyObject {
    /// Mirrors `channel.isWritable`.
    var isWritable: Bool { get }
    /// Writes bytes already in the connection's wire format (not flushed).
    func write(_ bytes: ByteBuffer)
    func flush()
    /// Writes and flushes a live batch (and only those: this write may go to the socket directly,
    /// `StreamWriter`).
    func writeAndFlush(_ bytes: ByteBuffer)
}

/// The worker subscriptions of one connection (`/ws/streams`, Server-Sent Events): subscribing and
/// unsubscribing by id or prefix pattern, following the workers a pattern matches, and the turns the
/// cursors that are behind take at catching up.
///
/// Cursors catch up one message at a time in turn, while the connection is writable, so that one
/// worker's backlog does not hold back the others; at most one store read is in flight per connection
/// (other cursors that need the store wait for their turn). Memory per connection is therefore its
/// socket's buffer, one store chunk and a few words per subscription, whatever the clients do.
/// Only touched on the connection's loop.
final class SubscriptionSet {
    let format: SubscriptionFormat
    let statistics: GatewayStatistics
    private let gateway: GatewayContext
    private let loop: EventLoop
    private let token: AccessToken?
    private let registry: SessionRegistry
    /// The connection that owns the set. `unowned(unsafe)`: it is read on every live batch, and the
    /// set touches it only until `removeAll()`. The owner keeps the set for its whole life (detaching
    /// calls `removeAll()` and never lets go of the set, since it can happen inside a call into the set:
    /// a failed write closes the connection synchronously); a store read that completes later finds
    /// `detached` set.
    private unowned(unsafe) let output: SubscriptionOutput
    private var detached = false
    /// Called when a subscription has ended with `end` (it is removed already).
    var onEnded: ((WorkerCursor) -> Void)?

    /// The subscriptions, by worker.
    private(set) var cursors: [WorkerID: WorkerCursor] = [:]
    /// Prefixes of the patterns followed (`""` for `*`).
    private var patterns: Set<String> = []
    /// The run of each worker patterns matched when last looked at: a worker with no subscription is
    /// subscribed when its run is not this one (it appeared, or started a new run).
    private var seenRuns: [WorkerID: String] = [:]
    /// The run at which a pattern's worker was refused (e.g. `too_many_subscribers`): not tried again
    /// by another pattern until its next run.
    private var refusedRuns: [WorkerID: String] = [:]
    /// `LogBus.runsStartedCount` when the patterns were last applied (-1: look again).
    private var runsChecked = -1

    private var queue: [WorkerCursor] = []
    private var queueHead = 0
    private var waitingForStore: [WorkerCursor] = []
    private var storeBusy = false
    private var pumping = false
    private var pumpAgain = false
    private var unflushed = false

    init(format: SubscriptionFormat, output: SubscriptionOutput, token: AccessToken?, loop: EventLoop, gateway: GatewayContext) {
        self.format = format
        self.output = output
        self.token = token
        self.loop = loop
        self.gateway = gateway
        self.statistics = gateway.statistics
        self.registry = gateway.registry(for: loop)
    }

    var isWritable: Bool { !detached && output.isWritable }
    var count: Int { cursors.count }

    /// The most prefix patterns one connection follows (besides `--max-stream-subscriptions`, which
    /// counts the workers subscribed).
    static let maxPatterns = 100

    // MARK: Subscribing

    /// Subscribes `selector` (errors are written as `error` messages).
    func subscribe(_ selector: WorkerSelector, start: SubscriptionStart) {
        subscribe([(selector, start)])
    }

    /// Subscribes the selectors of a message or a query, in order (errors are written as `error`
    /// messages). The workers are listed once for all the patterns.
    func subscribe(_ entries: [(selector: WorkerSelector, start: SubscriptionStart)]) {
        withExtendedLifetime(self) {
            var workers: [Worker]?
            var patternLimitReported = false
            for (selector, start) in entries {
                guard !detached else { return }
                subscribe(selector, start: start, workers: &workers, patternLimitReported: &patternLimitReported)
            }
            pump()
        }
    }

    private func subscribe(_ selector: WorkerSelector, start: SubscriptionStart, workers: inout [Worker]?, patternLimitReported: inout Bool) {
        switch selector {
        case .worker(let id):
            do throws(GatewayError) {
                if cursors[id] != nil {
                    throw GatewayError(.conflict, "already_subscribed", "already subscribed to worker '\(id)'; the subscription goes on")
                }
                try gateway.configuration.access.require(.read, on: id, token: token)
                let source = try StreamEndpoint.source(id: id, run: nil, gateway: gateway)
                try add(source, start: start)
            } catch {
                writeError(error, worker: id.rawValue)
            }
        case .prefix(let prefix):
            // A pattern already followed: its workers are subscribed, or were refused, or were
            // unsubscribed one by one (and come back at their next run).
            guard !patterns.contains(prefix) else { return }
            guard patterns.count < Self.maxPatterns else {
                // One error per message, naming the first pattern beyond the limit.
                guard !patternLimitReported else { return }
                patternLimitReported = true
                writeError(GatewayError.limitReached("too_many_subscriptions", "this connection follows \(Self.maxPatterns) patterns, its limit",
                                                     retryAfter: gateway.configuration.retryAfterSeconds),
                           worker: selector.description)
                return
            }
            patterns.insert(prefix)
            gateway.bus.mirrorFleet(matching: [prefix])
            if workers == nil { workers = gateway.bus.allWorkers() }
            var refusedForLimit = false
            for worker in workers! where worker.id.rawValue.hasPrefix(prefix) && covers(worker.id) {
                if let cursor = cursors[worker.id] {
                    seenRuns[worker.id] = cursor.source.runID.epoch
                    continue
                }
                seenRuns[worker.id] = worker.epoch
                // Refused at this run already (by another pattern): not again.
                guard refusedRuns[worker.id] != worker.epoch, !refusedForLimit else { continue }
                do throws(GatewayError) {
                    try add(.worker(worker), start: start)
                } catch {
                    refuse(worker, error, pattern: selector.description, refusedForLimit: &refusedForLimit)
                }
            }
        }
    }

    /// Subscribes the source of a single-worker stream, whose checks and subscriber place were taken
    /// before the stream started.
    func subscribe(_ source: StreamSource, replay: ReplayStart, resumed: (Bool, reason: String?)?) {
        guard !detached else { return }
        withExtendedLifetime(self) {
            open(source, replay: replay, resumed: resumed, reservation: nil)
            pump()
        }
    }

    /// Removes the subscriptions `selector` names (a pattern: also stops following it), each answered
    /// with `unsubscribed`.
    func unsubscribe(_ selector: WorkerSelector) {
        guard !detached else { return }
        switch selector {
        case .worker(let id):
            guard let cursor = cursors[id] else { return }
            remove(cursor)
            writeControl(StreamMessages.unsubscribed(worker: id), lastSeq: nil)
        case .prefix(let prefix):
            patterns.remove(prefix)
            for cursor in cursors.values.filter({ selector.matches($0.workerID) }).sorted(by: { $0.workerID < $1.workerID }) {
                remove(cursor)
                writeControl(StreamMessages.unsubscribed(worker: cursor.workerID), lastSeq: nil)
            }
        }
    }

    /// Subscribes the workers that patterns match and that appeared, or started a new run, since the
    /// last look (called about once a second).
    func followPatterns() {
        guard !patterns.isEmpty, !detached else { return }
        // Runs other gateways write (a shared store) get mirrors here first: they count as started runs.
        gateway.bus.mirrorFleet(matching: patterns)
        let runsStarted = gateway.bus.runsStartedCount
        guard runsStarted != runsChecked else { return }
        runsChecked = runsStarted
        var seen: [WorkerID: String] = [:]
        var refusedForLimit = false
        withExtendedLifetime(self) {
            for worker in gateway.bus.allWorkers() {
                guard !detached else { return }
                guard let pattern = patterns.first(where: { worker.id.rawValue.hasPrefix($0) }), covers(worker.id) else { continue }
                if let cursor = cursors[worker.id] {
                    seen[worker.id] = cursor.source.runID.epoch
                    continue
                }
                seen[worker.id] = worker.epoch
                guard seenRuns[worker.id] != worker.epoch, !refusedForLimit else { continue }
                do throws(GatewayError) {
                    try add(.worker(worker), replay: .first, resumed: nil)
                } catch {
                    refuse(worker, error, pattern: pattern + "*", refusedForLimit: &refusedForLimit)
                }
            }
            seenRuns = seen
            refusedRuns = refusedRuns.filter { seen[$0.key] == $0.value }
            pump()
        }
    }

    /// Answers a worker a pattern matched and that could not be subscribed: the connection's limit
    /// is one error naming the pattern (and the pattern's other workers are not tried); anything else
    /// an error naming the worker, which is not tried again at this run.
    private func refuse(_ worker: Worker, _ error: GatewayError, pattern: String, refusedForLimit: inout Bool) {
        if error.code == "too_many_subscriptions" {
            refusedForLimit = true
            writeError(error, worker: pattern)
        } else {
            refusedRuns[worker.id] = worker.epoch
            writeError(error, worker: worker.id.rawValue)
        }
    }

    /// Ends every subscription without a word (the connection is closing).
    func removeAll() {
        detached = true
        for cursor in Array(cursors.values) { remove(cursor) }
        patterns.removeAll()
        queue.removeAll()
        queueHead = 0
        waitingForStore.removeAll()
    }

    private func covers(_ id: WorkerID) -> Bool {
        (try? gateway.configuration.access.require(.read, on: id, token: token)) != nil
    }

    private func add(_ source: StreamSource, start: SubscriptionStart) throws(GatewayError) {
        let (replay, resumed) = ReplayStart.resolving(start, defaultTail: gateway.configuration.defaultTail, in: source)
        try add(source, replay: replay, resumed: resumed)
    }

    /// Checks the limits, takes a subscriber place of a live worker and opens the subscription.
    private func add(_ source: StreamSource, replay: ReplayStart, resumed: (Bool, reason: String?)?) throws(GatewayError) {
        guard !detached else { return }
        let limit = gateway.configuration.maxStreamSubscriptions
        guard cursors.count < limit else {
            throw GatewayError.limitReached("too_many_subscriptions", "this connection has reached its limit of \(limit) subscriptions",
                                            retryAfter: gateway.configuration.retryAfterSeconds)
        }
        var reservation: Worker?
        if case .worker(let worker) = source {
            if let refusal = gateway.limiter.reserveSubscriber(of: worker) { throw refusal }
            reservation = worker
        }
        open(source, replay: replay, resumed: resumed, reservation: reservation)
    }

    /// Writes `hello`, attaches the cursor to the worker's fan-out and queues it to catch up.
    private func open(_ source: StreamSource, replay: ReplayStart, resumed: (Bool, reason: String?)?, reservation: Worker?) {
        let cursor = WorkerCursor(source: source, rendering: format.rendering(for: source.workerID), reservation: reservation, set: self)
        cursors[source.workerID] = cursor
        let snapshot = source.snapshot()
        let replayFrom = replay.replayFrom(firstSeq: snapshot.firstSeq, lastSeq: snapshot.lastSeq)
        cursor.start(at: replayFrom)
        writeControl(StreamMessages.hello(snapshot, replayFrom: replayFrom, resumed: resumed), lastSeq: max(replayFrom, 1) - 1)
        if case .worker(let worker) = source { worker.fanOut.add(cursor, rendering: cursor.rendering, on: loop) }
        enqueue(cursor)
    }

    /// Ends `cursor`'s subscription: out of the fan-out, its subscriber place given back. Once only:
    /// a cursor already removed is left alone.
    private func remove(_ cursor: WorkerCursor) {
        guard cursors[cursor.workerID] === cursor else { return }
        cursors[cursor.workerID] = nil
        cursor.phase = .finished
        if case .worker(let worker) = cursor.source { worker.fanOut.remove(cursor, on: loop) }
        if let worker = cursor.reservation { gateway.limiter.releaseSubscriber(of: worker) }
    }

    // MARK: Writing

    func writeControl(_ json: ByteBuffer, lastSeq: UInt64?) {
        guard !detached else { return }
        output.write(format.control(json, lastSeq: lastSeq))
        unflushed = true
    }

    func writeGap(of cursor: WorkerCursor, from: UInt64, to: UInt64) {
        let json = format.namesWorker ? StreamMessages.gap(worker: cursor.workerID, from: from, to: to) : StreamMessages.gap(from: from, to: to)
        writeControl(json, lastSeq: to)
        statistics.gaps.add(1, ordering: .relaxed)
    }

    /// Writes `logs` bytes while catching up.
    func write(_ bytes: ByteBuffer, records: Int, payloadBytes: Int) {
        guard !detached else { return }
        output.write(bytes)
        unflushed = true
        registry.delivery.wrote(records: records, payloadBytes: payloadBytes, wireBytes: bytes.readableBytes)
    }

    /// Writes and flushes a live batch's rendered bytes.
    func writeLive(_ rendered: ByteBuffer, of batch: Batch) {
        guard !detached else { return }
        withExtendedLifetime(self) {
            // Counted first: a failed write closes the connection inside `writeAndFlush`.
            registry.delivery.wroteLive(batch, wireBytes: rendered.readableBytes, streams: registry.count)
            output.writeAndFlush(rendered)
        }
    }

    private func writeError(_ error: GatewayError, worker: String) {
        statistics.refused(code: error.code, status: Int(error.status.code))
        writeControl(StreamMessages.subscriptionError(worker: worker, code: error.code, message: error.message), lastSeq: nil)
    }

    /// Flushes what was written and not flushed yet.
    func flush() {
        guard unflushed else { return }
        unflushed = false
        if !detached { output.flush() }
    }

    // MARK: Catching up

    /// Queues `cursor` to catch up and lets the cursors take their turns.
    func catchUp(_ cursor: WorkerCursor) {
        guard !detached else { return }
        withExtendedLifetime(self) {
            enqueue(cursor)
            pump()
        }
    }

    /// The connection became writable, or stopped being so.
    func writabilityChanged() {
        if isWritable { withExtendedLifetime(self) { pump() } }
    }

    private func enqueue(_ cursor: WorkerCursor) {
        guard !cursor.queued, !detached else { return }
        cursor.queued = true
        queue.append(cursor)
    }

    /// Lets queued cursors write one message each in turn while the connection is writable.
    private func pump() {
        guard !detached else { return }
        if pumping {
            pumpAgain = true
            return
        }
        pumping = true
        defer { pumping = false }
        repeat {
            pumpAgain = false
            while isWritable, queueHead < queue.count {
                let cursor = queue[queueHead]
                queueHead += 1
                cursor.queued = false
                guard cursor.phase == .behind else { continue }
                switch cursor.step(into: self) {
                case .wrote:
                    enqueue(cursor)
                case .live:
                    break
                case .ended:
                    remove(cursor)  // (a no-op when the connection was closed during the step)
                    if !patterns.isEmpty { runsChecked = -1 }
                    onEnded?(cursor)
                case .needsStore(let from, let through):
                    if storeBusy {
                        cursor.queued = true
                        waitingForStore.append(cursor)
                    } else {
                        readStored(for: cursor, from: from, through: through)
                    }
                }
            }
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            } else if queueHead >= 64, queueHead * 2 >= queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            flush()
        } while pumpAgain || (isWritable && queueHead < queue.count)
    }

    /// Reads the next chunk of records that left the ring for `cursor`; its turns go on when it comes.
    private func readStored(for cursor: WorkerCursor, from: UInt64, through: UInt64) {
        guard let store = cursor.source.store else {
            cursor.storedChunkArrived(.success(.none), from: from, through: through, into: self)
            enqueue(cursor)
            return
        }
        storeBusy = true
        cursor.phase = .reading
        let bound = NIOLoopBound((self, cursor), eventLoop: loop)
        store.read(cursor.source.runID, from: from, through: through, maxBytes: StreamSession.storedChunkBytes, on: loop).whenComplete { result in
            let (set, cursor) = bound.value
            set.storedChunkArrived(result, for: cursor, from: from, through: through)
        }
    }

    private func storedChunkArrived(_ result: Result<StoredChunk, Error>, for cursor: WorkerCursor, from: UInt64, through: UInt64) {
        storeBusy = false
        guard !detached else { return }
        // The cursors that waited for the store go first, so that the next read is theirs: the
        // store is shared in turn, not kept by the cursor that had it.
        for waiting in waitingForStore where waiting.phase == .behind {
            waiting.queued = false
            enqueue(waiting)
        }
        waitingForStore.removeAll()
        withExtendedLifetime(self) {
            if cursor.phase == .reading, cursor.nextSeq == from {
                cursor.storedChunkArrived(result, from: from, through: through, into: self)
                enqueue(cursor)
            }
            pump()
            flush()
        }
    }
}
