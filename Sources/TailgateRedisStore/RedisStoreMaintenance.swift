import NIOCore
import TailgateCore
import TailgateRedis

/// `RedisRunStore`'s periodic work: the list of runs read again from Redis (other gateways' runs),
/// in-process runs of dead gateways ended (`endAbandonedRuns`), and retention (`RedisRetentionPlan`).
extension RedisRunStore {
    /// Reads the list of runs from Redis (other gateways' runs appear), ends the in-process runs whose
    /// gateway's writer lease expired, then applies retention.
    public func maintain() -> EventLoopFuture<Void> {
        refresh().flatMap { self.endAbandonedRuns() }.flatMap { self.applyRetention() }.always { _ in self.scheduleWrite() }
    }

    /// Reads every run's manifest from Redis and merges it into the runs in memory.
    func refresh() -> EventLoopFuture<Void> {
        let keys = keys
        return client.send(RedisCommand("SMEMBERS", [.string(keys.workers)])).flatMap { reply in
            let workers = (reply.array ?? []).compactMap { $0.string.flatMap(WorkerID.init) }
            let replies = self.client.send(workers.map { RedisCommand("ZRANGE", [.string(keys.runs(of: $0)), "0", "-1"]) })
            return EventLoopFuture.whenAllSucceed(replies, on: self.loop).map { epochs in
                zip(workers, epochs).flatMap { worker, epochs in
                    (epochs.array ?? []).compactMap { $0.string }.filter(RunID.isValidEpoch).map { RunID(worker: worker, epoch: $0) }
                }
            }
        }.flatMap { ids in
            let replies = self.client.send(ids.map { RedisCommand("HGETALL", [.string(keys.manifest($0))]) })
            return EventLoopFuture.whenAllSucceed(replies, on: self.loop).map { manifests in
                var stored: [RunID: RunInfo] = [:]
                for (id, manifest) in zip(ids, manifests) {
                    if let info = RedisManifest.decode(manifest, id: id) { stored[id] = info }
                }
                self.merge(stored)
            }
        }
    }

    /// Runs this store writes keep their own view (Redis may not have their latest writes yet), with
    /// retention's changes from Redis; every other run is taken as stored; runs gone from Redis and idle
    /// here are forgotten.
    private func merge(_ stored: [RunID: RunInfo]) {
        state.withLock { state in
            for (id, info) in stored {
                if var entry = state.runs[id], entry.isOpen || entry.queuedOperations > 0 || !entry.pending.isEmpty {
                    entry.info.firstSeq = max(entry.info.firstSeq, min(info.firstSeq, entry.info.lastSeq + 1))
                    if info.lastSeq >= entry.info.lastSeq { entry.info.storedBytes = info.storedBytes }
                    state.runs[id] = entry
                } else if state.runs[id] != nil {
                    state.runs[id]!.info = info
                } else {
                    state.runs[id] = RedisRunEntry(info: info, isOpen: false)
                }
            }
            for (id, entry) in state.runs where stored[id] == nil && !entry.isOpen && entry.queuedOperations == 0 && entry.pending.isEmpty {
                state.runs[id] = nil
            }
        }
    }

    /// Deletes finished runs older than `retainAge`, then, over `retainBytes`, the oldest finished runs
    /// and the oldest entries of running runs (`XTRIM MINID`); see `RedisRetentionPlan`.
    public func applyRetention() -> EventLoopFuture<Void> {
        let now = Timestamp.now()
        let plan = state.withLock { state in
            RedisRetentionPlan(runs: state.runs.values.map { ($0.info, $0.isOpen || $0.queuedOperations > 0 || !$0.pending.isEmpty) },
                               configuration: configuration, now: now)
        }
        guard !plan.deletedRuns.isEmpty || !plan.trims.isEmpty else { return loop.makeSucceededVoidFuture() }
        var commands: [RedisCommand] = []
        for id in plan.deletedRuns {
            commands.append(RedisCommand("DEL", [.string(keys.stream(id)), .string(keys.manifest(id)), .string(keys.offsets(id))]))
            commands.append(RedisCommand("ZREM", [.string(keys.runs(of: id.worker)), .string(id.epoch)]))
        }
        for trim in plan.trims {
            commands.append(RedisScripts.command(RedisScripts.trim, keys: [keys.stream(trim.id), keys.manifest(trim.id)],
                                                 arguments: [.integer(Int64(trim.bytes))]))
        }
        state.withLock { state in
            for id in plan.deletedRuns { state.runs[id] = nil }
        }
        logger.info("retention", metadata: ["deleted_runs": "\(plan.deletedRuns.count)", "trimmed_runs": "\(plan.trims.count)"])
        return EventLoopFuture.andAllSucceed(client.send(commands), on: loop).flatMap { self.refresh() }
    }
}
