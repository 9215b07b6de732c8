import Logging
import NIOCore
import TailgateCore

/// Reads stored records of a run (on the store's reader threads): from its segments, and from the
/// batches still queued for the writer.
struct RunReader: Sendable {
    let shared: StoreShared
    let layout: StoreLayout
    let logger: Logger

    /// What one run looked like when a read began.
    private struct View {
        var segments: [SegmentState]
        /// Queued batches that hold seqs at or after the asked one, in seq order.
        var pending: [Batch]
    }

    /// Records of `id` from `seq` on, up to `bound`, about `maxBytes` (see `RunStore.read`).
    func read(_ id: RunID, from seq: UInt64, through bound: UInt64, maxBytes: Int) throws(StoreError) -> StoredChunk {
        guard seq <= bound, let view = try view(of: id, from: seq) else { return .none }
        let fromDisk = try SegmentReader(runPath: layout.runPath(id), logger: logger) { firstSeq, index in
            remember(index, of: id, segment: firstSeq)
        }.read(view.segments, from: seq, through: bound, maxBytes: maxBytes)
        var next: UInt64?
        switch fromDisk {
        case .records(let batch): return .records(batch)
        case .next(let seq): next = seq
        case .nothing: break
        }
        for batch in view.pending where batch.lastSeq >= seq {
            if batch.firstSeq <= seq { return .records(batch.slice(from: seq, through: bound, maxBytes: maxBytes)) }
            next = min(next ?? batch.firstSeq, batch.firstSeq)
            break
        }
        guard let next, next <= bound else { return .none }
        return .gap(from: seq, to: next - 1)
    }

    /// The run's segments and queued batches, listing its folder if no one has yet.
    private func view(of id: RunID, from seq: UInt64) throws(StoreError) -> View? {
        let found = shared.state.withLock { state -> (segments: [SegmentState]?, pending: [Batch])? in
            guard let entry = state.runs[id] else { return nil }
            return (entry.segments, entry.pending.filter { $0.lastSeq >= seq })
        }
        guard let found else { return nil }
        if let segments = found.segments { return View(segments: segments, pending: found.pending) }
        let segments = try RunFiles.list(layout.runPath(id)).segmentStates
        shared.state.withLock { state in
            if state.runs[id]?.segments == nil { state.runs[id]?.segments = segments }
        }
        return View(segments: segments, pending: found.pending)
    }

    /// Keeps an index a read loaded or rebuilt, for the next reads of the segment.
    private func remember(_ index: SparseIndex, of id: RunID, segment firstSeq: UInt64) {
        shared.state.withLock { state in
            guard let position = state.runs[id]?.segments?.firstIndex(where: { $0.firstSeq == firstSeq }) else { return }
            if state.runs[id]!.segments![position].index == nil { state.runs[id]!.segments![position].index = index }
        }
    }
}
