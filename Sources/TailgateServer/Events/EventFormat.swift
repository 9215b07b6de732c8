import NIOCore
import TailgateCore

/// The Server-Sent Events wire format (`text/event-stream`): each message is one event whose `data:`
/// is the JSON of the WebSocket message. One worker's events (`/api/workers/{id}/events`) carry
/// `id: EPOCH:SEQ` (the run and the last seq the message covers, for `Last-Event-ID`) and the messages
/// of `/ws/workers/{id}`; several workers' events (`/api/streams/events`) carry no `id:` and the
/// messages of `/ws/streams`.
struct EventFormat: SubscriptionFormat {
    /// One worker's run (the epoch its `id:` lines carry); `nil`: several workers, messages naming their worker.
    let singleWorkerEpoch: String?

    init(singleWorkerEpoch: String?) {
        self.singleWorkerEpoch = singleWorkerEpoch
    }

    var singleWorker: Bool { singleWorkerEpoch != nil }
    var namesWorker: Bool { !singleWorker }

    func rendering(for worker: WorkerID) -> BatchRendering {
        if let singleWorkerEpoch { return WorkerEventRendering(epoch: singleWorkerEpoch) }
        return NamedEventRendering(worker: worker)
    }

    func logs(_ payload: ByteBuffer, worker: WorkerID, lastSeq: UInt64) -> ByteBuffer {
        if let singleWorkerEpoch { return Self.event(payload, epoch: singleWorkerEpoch, seq: lastSeq) }
        return Self.event(LogsEnvelope.naming(worker, in: payload), epoch: nil, seq: nil)
    }

    func control(_ json: ByteBuffer, lastSeq: UInt64?) -> ByteBuffer {
        Self.event(json, epoch: singleWorkerEpoch, seq: lastSeq)
    }

    /// `id: EPOCH:SEQ\ndata: JSON\n\n` (without the `id:` line when `epoch` or `seq` is `nil`). The JSON
    /// is one line: encoded records and stored lines never hold a raw line break.
    static func event(_ json: ByteBuffer, epoch: String?, seq: UInt64?) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: json.readableBytes + 48)
        if let epoch, let seq {
            buffer.writeStaticString("id: ")
            buffer.writeString(epoch)
            buffer.writeInteger(UInt8(ascii: ":"))
            buffer.writeString(String(seq))
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        buffer.writeStaticString("data: ")
        buffer.writeImmutableBuffer(json)
        buffer.writeStaticString("\n\n")
        return buffer
    }

    /// A comment line that keeps the connection (and proxies' read timeouts) alive.
    static let keepalive: ByteBuffer = ByteBuffer(string: ": keepalive\n\n")
}

/// A batch as one event of `/api/workers/{id}/events`: `id: EPOCH:LAST\ndata: {"type":"logs","records":[…]}\n\n`.
/// (A worker's fan-out carries the batches of one run, so every connection of this key has the same epoch.)
struct WorkerEventRendering: BatchRendering {
    let epoch: String

    var key: Int { 400 }

    func render(_ batch: Batch) -> ByteBuffer {
        EventFormat.event(batch.payload, epoch: epoch, seq: batch.lastSeq)
    }
}

/// A worker's batch as one event of `/api/streams/events`: `data: {"type":"logs","worker":"ID","records":[…]}\n\n`.
struct NamedEventRendering: BatchRendering {
    let worker: WorkerID

    var key: Int { 401 }

    func render(_ batch: Batch) -> ByteBuffer {
        EventFormat.event(LogsEnvelope.naming(worker, in: batch.payload), epoch: nil, seq: nil)
    }
}
