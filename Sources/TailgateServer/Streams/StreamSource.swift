import NIOCore
import TailgateCore

/// What a stream follows: the run of a live worker (its ring, and the store behind it), or a stored
/// run that has ended (read from the store alone, then `end`).
enum StreamSource {
    case worker(Worker)
    case storedRun(RunInfo, RunStore)

    var workerID: WorkerID {
        switch self {
        case .worker(let worker): worker.id
        case .storedRun(let run, _): run.id.worker
        }
    }

    var runID: RunID {
        switch self {
        case .worker(let worker): worker.runID
        case .storedRun(let run, _): run.id
        }
    }

    var store: RunStore? {
        switch self {
        case .worker(let worker): worker.store
        case .storedRun(_, let store): store
        }
    }

    /// The run's state now, as `hello` describes it.
    func snapshot() -> WorkerSnapshot {
        switch self {
        case .worker(let worker):
            return worker.snapshot()
        case .storedRun(let run, _):
            return WorkerSnapshot(run: run)
        }
    }

    /// Where a reader whose next seq is `seq` stands.
    func read(at seq: UInt64) -> Worker.ReadPosition {
        switch self {
        case .worker(let worker):
            return worker.read(at: seq)
        case .storedRun(let run, _):
            return seq > run.lastSeq ? .caughtUp(ended: true) : .stored(from: seq, through: run.lastSeq)
        }
    }

    /// How the run ended (once it has).
    var ending: RunEnding {
        switch self {
        case .worker(let worker):
            return worker.ending
        case .storedRun(let run, _):
            return RunEnding(status: run.status, exitCode: run.exitCode, reason: run.reason ?? Worker.defaultStopReason,
                             at: run.stoppedAt ?? run.startedAt)
        }
    }
}
