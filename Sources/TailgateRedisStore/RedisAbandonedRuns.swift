import NIOCore
import TailgateCore
import TailgateRedis

/// In-process runs of a gateway that died: nobody else continues them (their records come from inside
/// that gateway's process), so every gateway's maintenance ends them in Redis once their worker's writer
/// lease is gone (`RedisScripts.endAbandoned`), as `interrupted` with the reason. Remote runs are left
/// alone: their publisher continues them on another gateway.
extension RedisRunStore {
    /// Ends, as `interrupted`, every in-process run the list of runs shows `running` that this store
    /// does not write itself and whose writer lease has expired (or is held by another gateway than the
    /// run's writer); the check and the write are one script per run, so a run whose gateway holds its
    /// lease again is left running. Updates the list of runs with what was ended.
    func endAbandonedRuns() -> EventLoopFuture<Void> {
        let candidates = state.withLock { state in
            state.runs.filter { _, entry in
                entry.info.owner == .inProcess && entry.info.status == .running
                    && !entry.isOpen && entry.queuedOperations == 0 && entry.pending.isEmpty
            }.map(\.key)
        }
        guard !candidates.isEmpty else { return loop.makeSucceededVoidFuture() }
        let now = Timestamp.now()
        let replies = client.send(candidates.map { id in
            RedisScripts.command(RedisScripts.endAbandoned, keys: [keys.manifest(id), keys.lease(of: id.worker)],
                                 arguments: [.integer(now.microseconds)])
        })
        return EventLoopFuture.whenAllSucceed(replies, on: loop).map { replies in
            let ended = zip(candidates, replies).compactMap { id, reply -> (RunID, String)? in
                guard let parts = reply.array, parts.first?.int == 1, let reason = parts.dropFirst().first?.string else { return nil }
                return (id, reason)
            }
            guard !ended.isEmpty else { return }
            self.state.withLock { state in
                for (id, reason) in ended where state.runs[id] != nil && !state.runs[id]!.isOpen {
                    state.runs[id]!.info.status = .interrupted
                    state.runs[id]!.info.reason = reason
                    state.runs[id]!.info.stoppedAt = now
                    state.runs[id]!.info.exitCode = nil
                }
            }
            for (id, reason) in ended {
                self.logger.warning("ended a run its gateway can no longer write", metadata: ["run": "\(id)", "reason": "\(reason)"])
            }
        }
    }
}
