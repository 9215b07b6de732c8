import TailgateCore

/// The names of the store's keys. Every key of one worker carries the hash tag `{worker}`, so Redis
/// Cluster keeps a worker's keys in one slot (its scripts touch several of them at once):
///
/// | key | type | holds |
/// |---|---|---|
/// | `P:workers` | set | every worker id with stored runs (the fleet registry) |
/// | `P:{W}:runs` | sorted set | the worker's run epochs, scored by `started_at` (µs) |
/// | `P:{W}:manifest:E` | hash | the run's manifest (`RedisManifest`) |
/// | `P:{W}:run:E` | stream | one entry per batch: id `<lastSeq>-0`, fields `f` (first seq), `l` (last seq), `b` (records as NDJSON) |
/// | `P:{W}:offsets:E` | hash | each publisher's last accepted line offset in the run |
/// | `P:{W}:lease` | string | the instance name of the gateway writing W's runs, with a TTL (writer lease) |
///
/// (`P` is the prefix, `tailgate` by default; `W` the worker id, which cannot hold braces; `E` the epoch.)
struct RedisKeys: Sendable {
    let prefix: String

    /// The fleet registry.
    var workers: String { prefix + ":workers" }

    func runs(of worker: WorkerID) -> String { "\(prefix):{\(worker.rawValue)}:runs" }
    func manifest(_ id: RunID) -> String { "\(prefix):{\(id.worker.rawValue)}:manifest:\(id.epoch)" }
    func stream(_ id: RunID) -> String { "\(prefix):{\(id.worker.rawValue)}:run:\(id.epoch)" }
    func offsets(_ id: RunID) -> String { "\(prefix):{\(id.worker.rawValue)}:offsets:\(id.epoch)" }
    func lease(of worker: WorkerID) -> String { "\(prefix):{\(worker.rawValue)}:lease" }

    /// The stream entry id of a batch: its last seq. `XRANGE key <seq>-0 +` then starts at the batch
    /// holding `seq` (the first whose last seq is at or after it).
    static func entryID(lastSeq: UInt64) -> String { "\(lastSeq)-0" }
}
