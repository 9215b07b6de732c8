import TailgateCore

/// Which whole runs retention deletes, chosen under the store's lock (the chosen runs leave the shared
/// state at once, so no read or write starts on them afterwards):
///
/// 1. finished runs that stopped longer than `retainAge` ago;
/// 2. while the store holds more than `retainBytes`, finished runs, oldest `startedAt` first.
///
/// A run is finished when it is not open in this process and nothing of it is queued. When deleting
/// every finished run is not enough, the writer then deletes the oldest segments of running runs
/// (`remainingBytes` says how much is left).
struct RetentionPlan {
    /// The runs to delete from disk.
    private(set) var deletedRuns: [RunID] = []
    /// Bytes the store holds once they are deleted.
    private(set) var remainingBytes = 0
    /// Callers still waiting on the deleted runs (none, normally), to be released.
    private(set) var releasedWaiters: [WriteWaiter] = []

    /// Chooses the runs to delete and removes them from `state`; `writing` are the runs the writer has open.
    init(deleting state: inout StoreState, configuration: StoreConfiguration, now: Timestamp, writing: Set<RunID>) {
        var total = state.runs.values.reduce(0) { $0 + $1.info.storedBytes }
        var finished = state.runs.filter { id, entry in
            !entry.isOpen && entry.pending.isEmpty && entry.queuedOperations == 0 && !writing.contains(id)
        }.map(\.value.info)
        if let age = configuration.retainAge {
            let cutoff = Timestamp(microseconds: now.microseconds - age.nanoseconds / 1000)
            for info in finished {
                if let stoppedAt = info.stoppedAt, stoppedAt < cutoff { delete(info, total: &total, from: &state) }
            }
            finished.removeAll { info in info.stoppedAt.map { $0 < cutoff } ?? false }
        }
        if let budget = configuration.retainBytes, total > budget {
            finished.sort { $0.startedAt < $1.startedAt }
            for info in finished {
                guard total > budget else { break }
                delete(info, total: &total, from: &state)
            }
        }
        remainingBytes = total
    }

    private mutating func delete(_ info: RunInfo, total: inout Int, from state: inout StoreState) {
        releasedWaiters += state.runs.removeValue(forKey: info.id)?.waiters ?? []
        total -= info.storedBytes
        deletedRuns.append(info.id)
    }
}
