import NIOCore
import TailgateCore

/// One worker's subscription on a connection that may carry several (`/ws/streams`, Server-Sent
/// Events): a cursor into the worker's run, `nextSeq` being the first seq it has not sent yet.
///
/// While the cursor is at the head and its connection writable, live batches go out as they come (the
/// same rendered bytes for every connection of its format). Otherwise it is behind: its
/// `SubscriptionSet` lets it catch up from the ring one message at a time, taking turns with the
/// connection's other cursors, with a `gap` where the ring has moved past it; records that left the
/// ring are read from the store, a chunk at a time, off the loop. A stored run that has ended is read
/// from the store alone, then `end`. So the seqs it sends are always `replay_from, replay_from + 1, …`.
/// Lives on its connection's loop.
final class WorkerCursor: BatchSubscriber {
    enum Phase {
        /// Caught up: live batches are written as they come.
        case live
        /// Behind the head: waits for its turn to catch up.
        case behind
        /// Waiting for a chunk read from the store.
        case reading
        /// Ended or unsubscribed: writes nothing more.
        case finished
    }

    /// What a step of catching up did.
    enum Step {
        /// Wrote one message; more may follow.
        case wrote
        /// Caught up: live from now on.
        case live
        /// Wrote `end`: the run is over.
        case ended
        /// The next records are only in the store.
        case needsStore(from: UInt64, through: UInt64)
    }

    let source: StreamSource
    let rendering: BatchRendering
    /// The worker whose subscriber place the subscription holds, given back when it finishes.
    let reservation: Worker?
    private(set) var nextSeq: UInt64 = 0
    var phase = Phase.behind
    /// In its set's catch-up queue, or waiting there for the store.
    var queued = false
    /// `unowned(unsafe)`: read on every live batch. The set outlives the cursor's place in the fan-out:
    /// its session owns it until the session's handler is removed from the pipeline (never inside a
    /// call into the set), and it removes the cursor from the fan-out when detached, before that;
    /// after that `phase` is `.finished`. The set's entry points keep it alive while they run.
    private unowned(unsafe) let set: SubscriptionSet

    init(source: StreamSource, rendering: BatchRendering, reservation: Worker?, set: SubscriptionSet) {
        self.source = source
        self.rendering = rendering
        self.reservation = reservation
        self.set = set
    }

    var workerID: WorkerID { source.workerID }

    /// Places the cursor at `replayFrom` (before `hello` is written).
    func start(at replayFrom: UInt64) {
        nextSeq = replayFrom
    }

    // MARK: Live delivery (BatchSubscriber)

    func offer(_ batch: Batch, rendered: ByteBuffer) {
        guard phase == .live else { return }
        if nextSeq == batch.firstSeq && set.isWritable {
            nextSeq = batch.lastSeq + 1
            set.writeLive(rendered, of: batch)
        } else if nextSeq <= batch.lastSeq {
            phase = .behind
            set.catchUp(self)
        }
    }

    func workerEnded() {
        guard phase == .live else { return }
        phase = .behind
        set.catchUp(self)
    }

    // MARK: Catching up

    /// Writes the next message from the ring (a batch or a `gap`), or says what stops it.
    func step(into set: SubscriptionSet) -> Step {
        switch source.read(at: nextSeq) {
        case .gap(let from, let to):
            nextSeq = to + 1
            set.writeGap(of: self, from: from, to: to)
            return .wrote
        case .batch(let batch):
            let records = Int(batch.lastSeq - nextSeq + 1)
            if batch.firstSeq == nextSeq {
                set.write(rendering.bytes(for: batch), records: records, payloadBytes: batch.payload.readableBytes)
            } else {
                let payload = batch.payload(from: nextSeq)
                set.write(set.format.logs(payload, worker: workerID, lastSeq: batch.lastSeq), records: records, payloadBytes: payload.readableBytes)
                set.statistics.partialFrames.add(1, ordering: .relaxed)
            }
            nextSeq = batch.lastSeq + 1
            return .wrote
        case .stored(let from, let through):
            return .needsStore(from: from, through: through)
        case .caughtUp(let ended):
            if ended {
                phase = .finished
                set.writeControl(StreamMessages.end(worker: workerID, lastSeq: nextSeq - 1, epoch: source.runID.epoch, ending: source.ending),
                                 lastSeq: nextSeq - 1)
                return .ended
            }
            phase = .live
            return .live
        }
    }

    /// Writes a chunk read from the store for `from...through` (records, or a `gap` for what is not stored).
    func storedChunkArrived(_ result: Result<StoredChunk, Error>, from: UInt64, through: UInt64, into set: SubscriptionSet) {
        phase = .behind
        switch result {
        case .success(.records(let batch)) where batch.firstSeq == from:
            set.write(rendering.bytes(for: batch), records: batch.count, payloadBytes: batch.payload.readableBytes)
            set.statistics.storedChunks.add(1, ordering: .relaxed)
            nextSeq = batch.lastSeq + 1
        case .success(.gap(_, let to)) where to >= from:
            nextSeq = min(to, through) + 1
            set.writeGap(of: self, from: from, to: nextSeq - 1)
        default:
            // Nothing stored from `from` (a failed disk lost it), or the read failed: an explicit gap.
            nextSeq = through + 1
            set.writeGap(of: self, from: from, to: through)
        }
    }
}
