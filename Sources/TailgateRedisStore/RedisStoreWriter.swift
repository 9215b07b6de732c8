import NIOCore
import TailgateCore
import TailgateRedis

/// The writer of `RedisRunStore`, on the store's own loop: operations queued by `begin`, `append` and
/// `end` go to Redis as pipelines, one in flight at a time (see `RedisScripts` for what each sends).
extension RedisRunStore {
    /// Queues `operation`; whether a write pass must be scheduled.
    static func enqueue(_ operation: RedisWriteOperation, in state: inout RedisStoreState) -> Bool {
        state.queue.append(operation)
        state.enqueuedOperations += 1
        state.queuedBytes += operation.bytes
        state.runs[operation.runID]?.queuedOperations += 1
        guard !state.writeScheduled, !state.writing else { return false }
        state.writeScheduled = true
        return true
    }

    func scheduleWrite() {
        loop.execute { self.writePass() }
    }

    /// Sends what is queued as one pipeline (up to `pipelineLimit` operations) and, when it is answered,
    /// the next. While Redis is unreachable, waits for it to come back.
    private func writePass() {
        let limit = configuration.pipelineLimit
        let connected = client.isConnected
        let taken = state.withLock { state -> ([RedisWriteOperation], Set<WorkerID>)? in
            state.writeScheduled = false
            guard !state.writing, !state.queue.isEmpty else { return nil }
            state.writing = true
            guard connected else { return ([], []) }
            let taken = Array(state.queue.prefix(limit))
            state.queue.removeFirst(taken.count)
            // A run first seen through its batches (never begun here) joins the fleet registry too.
            var unregistered: Set<WorkerID> = []
            for operation in taken {
                guard case .append(let id, _, _) = operation, state.runs[id]?.registered == false else { continue }
                state.runs[id]!.registered = true
                unregistered.insert(id.worker)
            }
            return (taken, unregistered)
        }
        guard let (taken, unregistered) = taken else { return }
        guard !taken.isEmpty else {
            // Redis is out of reach: what is queued stays queued (within `writeQueueBytes`) until it is back.
            requeue([], error: RedisError.notConnected(client.lastError ?? "connecting"))
            waitForRedisThenWrite()
            return
        }
        var commands = unregistered.map { RedisCommand("SADD", [.string(keys.workers), .string($0.rawValue)]) }
        var replyIndex: [Int] = []
        for operation in taken {
            commands += self.commands(for: operation)
            replyIndex.append(commands.count - 1)
            if case .begin(let info) = operation { commands.append(RedisCommand("SADD", [.string(keys.workers), .string(info.id.worker.rawValue)])) }
        }
        let replies = client.send(commands)
        let futures = replyIndex.map { replies[$0] }
        EventLoopFuture.whenAllComplete(futures, on: loop).whenSuccess { results in
            self.finish(taken, results: results)
        }
    }

    /// The commands of one operation; the last one's reply tells how it went.
    private func commands(for operation: RedisWriteOperation) -> [RedisCommand] {
        switch operation {
        case .begin(let info):
            return [RedisScripts.command(RedisScripts.begin, keys: [keys.manifest(info.id), keys.runs(of: info.id.worker)], arguments: [
                .string(info.id.epoch), .integer(info.startedAt.microseconds), .string(info.owner.rawValue), .string(info.id.worker.rawValue),
                .unsigned(info.lastSeq + 1), .unsigned(info.lastSeq), .string(instanceName),
            ])]
        case .append(let id, let batch, let offsets):
            var lines = ByteBufferAllocator().buffer(capacity: batch.recordBytes + batch.count)
            batch.writeLines(into: &lines)
            let add = RedisCommand("XADD", [.string(keys.stream(id)), .string(RedisKeys.entryID(lastSeq: batch.lastSeq)),
                                            "f", .unsigned(batch.firstSeq), "l", .unsigned(batch.lastSeq), "b", .bytes(lines)])
            var arguments: [RedisCommand.Argument] = [
                .unsigned(batch.firstSeq), .unsigned(batch.lastSeq), .integer(Int64(lines.readableBytes)), .string(id.epoch),
                .integer(Timestamp.now().microseconds), .string(id.worker.rawValue), .string(instanceName),
            ]
            for (publisher, offset) in offsets.sorted(by: { $0.key < $1.key }) {
                arguments.append(.string(publisher))
                arguments.append(.unsigned(offset))
            }
            let account = RedisScripts.command(RedisScripts.recordAppend,
                                               keys: [keys.stream(id), keys.manifest(id), keys.offsets(id), keys.runs(of: id.worker),
                                                      keys.lease(of: id.worker)],
                                               arguments: arguments)
            return [RedisCommand("MULTI"), add, account, RedisCommand("EXEC")]
        case .end(let id, let ending):
            return [RedisScripts.command(RedisScripts.end, keys: [keys.manifest(id)], arguments: [
                .string(ending.status.rawValue), .integer(ending.at.microseconds), .string(ending.reason),
                .string(ending.exitCode.map(String.init) ?? ""),
            ])]
        }
    }

    /// How an operation went, from its last reply: an append's `EXEC` holds the `XADD`'s and the
    /// script's replies (errors inside a transaction are values, not failed commands).
    private static func outcome(of operation: RedisWriteOperation, _ result: Result<RESPValue, Error>) -> Result<Void, Error> {
        guard case .append = operation else { return result.map { _ in () } }
        switch result {
        case .failure(let error):
            return .failure(error)
        case .success(let reply):
            guard let replies = reply.array, replies.count == 2 else {
                return .failure(RedisError.server("EXECABORT the append's transaction was not run (\(reply))"))
            }
            if case .error(let text) = replies[0], !text.hasPrefix(RedisScripts.duplicateEntry) { return .failure(RedisError.server(text)) }
            if case .error(let text) = replies[1] { return .failure(RedisError.server(text)) }
            return .success(())
        }
    }

    /// Accounts for a pipeline's replies, in order: acknowledged writes release their waiters; a
    /// write Redis refused is dropped (counted, its text kept); writes cut by a lost connection go back
    /// to the front of the queue.
    private func finish(_ operations: [RedisWriteOperation], results: [Result<RESPValue, Error>]) {
        var retry: [RedisWriteOperation] = []
        var released: [RedisWriteWaiter] = []
        var refusal: String?
        var connectionError: Error?
        var flushed: [EventLoopPromise<Void>] = []
        var droppedBeforeRecovery = 0
        var fencedBy: [WorkerID: String] = [:]
        state.withLock { state in
            for (operation, result) in zip(operations, results) {
                switch Self.outcome(of: operation, result) {
                case .success:
                    released += state.finish(operation, written: true)
                case .failure(RedisError.server(let text)) where text.hasPrefix(RedisScripts.fenced):
                    // Another gateway writes the run now: not a failure of Redis, the batch is not ours to write.
                    fencedBy[operation.runID.worker] = String(text.dropFirst(RedisScripts.fenced.count))
                    released += state.finish(operation, written: false)
                case .failure(let error as RedisError) where error.serverCode != nil:
                    if case .append = operation { state.failedWrites += 1 }
                    state.fail("Redis refused a write: \(error)", queueLimit: configuration.writeQueueBytes)
                    refusal = state.lastError
                    released += state.finish(operation, written: false)
                case .failure(let error):
                    connectionError = error
                    retry.append(operation)
                }
            }
            if retry.isEmpty && refusal == nil && !operations.isEmpty {
                droppedBeforeRecovery = state.recover()
            }
            if state.failed { released += state.takeAllWaiters() }
            flushed = state.takeFlushWaiters()
        }
        for waiter in released { waiter.promise.succeed() }
        for promise in flushed { promise.succeed() }
        for (worker, holder) in fencedBy { writerFenced(worker, holder: holder) }
        if let refusal { logger.error("Redis refused a write", metadata: ["error": "\(refusal)"]) }
        if droppedBeforeRecovery > 0 {
            logger.error("\(droppedBeforeRecovery) record\(droppedBeforeRecovery == 1 ? "" : "s") dropped for Redis while it did not take writes; Redis takes writes again",
                         metadata: ["dropped": "\(droppedBeforeRecovery)"])
        }
        if let connectionError {
            requeue(retry, error: connectionError)
            waitForRedisThenWrite()
        } else {
            state.withLock { $0.writing = false }
            writePass()
        }
    }

    /// Writes again once Redis is back (or after `maintenanceInterval`, to try again), never sooner
    /// than `retryPause`: a connection that is closing fails its pipeline's commands from inside its
    /// own close, while the client still says it is connected, so writing again at once failed again
    /// at once, recursing until the stack overflowed (a `redis-server` stopped with `SIGSTOP` for longer
    /// than the command timeout crashed the gateway so).
    func waitForRedisThenWrite() {
        let loop = loop
        client.waitUntilConnected(within: configuration.maintenanceInterval).whenComplete { _ in
            loop.scheduleTask(in: Self.retryPause) {
                self.state.withLock { $0.writing = false }
                self.writePass()
            }
        }
    }

    /// The least time between a failed pipeline and the next attempt.
    static let retryPause = TimeAmount.milliseconds(20)

    /// Puts operations back at the front of the queue (Redis could not be reached for them) and marks
    /// the store failed meanwhile.
    func requeue(_ operations: [RedisWriteOperation], error: Error) {
        let waiters = state.withLock { state -> [RedisWriteWaiter] in
            state.queue.insert(contentsOf: operations, at: 0)
            state.fail("\(error)", queueLimit: configuration.writeQueueBytes)
            return state.takeAllWaiters()
        }
        for waiter in waiters { waiter.promise.succeed() }
    }
}
