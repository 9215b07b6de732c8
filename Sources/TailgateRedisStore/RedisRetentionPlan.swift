import NIOCore
import TailgateCore

/// What retention deletes in Redis:
///
/// 1. finished runs that stopped longer than `retainAge` ago (whole runs: `DEL`);
/// 2. while the fleet's runs hold more than `retainBytes`, finished runs, oldest `startedAt` first;
/// 3. if that is not enough, the oldest entries of running runs, oldest run first: the trim script
///    deletes whole entries (batches) from the start of the run's stream until the excess is freed, with
///    `XTRIM MINID` just past the last one.
///
/// A run is finished when its status is not `running` and this store is not writing it.
struct RedisRetentionPlan {
    struct Trim {
        var id: RunID
        /// Bytes of records to free from the start of the run.
        var bytes: Int
    }

    private(set) var deletedRuns: [RunID] = []
    private(set) var trims: [Trim] = []

    init(runs: [(info: RunInfo, busy: Bool)], configuration: RedisStoreConfiguration, now: Timestamp) {
        var total = runs.reduce(0) { $0 + $1.info.storedBytes }
        var finished = runs.filter { !$0.busy && $0.info.status != .running }.map(\.info)
        if let age = configuration.retainAge {
            let cutoff = Timestamp(microseconds: now.microseconds - age.nanoseconds / 1000)
            for info in finished where info.stoppedAt.map({ $0 < cutoff }) ?? false {
                deletedRuns.append(info.id)
                total -= info.storedBytes
            }
            finished.removeAll { info in info.stoppedAt.map { $0 < cutoff } ?? false }
        }
        guard let budget = configuration.retainBytes, total > budget else { return }
        for info in finished.sorted(by: { $0.startedAt < $1.startedAt }) {
            guard total > budget else { return }
            deletedRuns.append(info.id)
            total -= info.storedBytes
        }
        let deleted = Set(deletedRuns)
        for info in runs.map(\.info).filter({ !deleted.contains($0.id) && $0.storedRecords > 0 }).sorted(by: { $0.startedAt < $1.startedAt }) {
            guard total > budget else { return }
            let bytes = min(total - budget, info.storedBytes)
            trims.append(Trim(id: info.id, bytes: bytes))
            total -= bytes
        }
    }
}
