import NIOCore
import TailgateCore

/// The Server-Sent Events wire format (`text/event-stream`): each message is one event whose `data:`
/// is the JSON of the WebSocket message. One worker's events (`/api/workers/{id}/events`) carry
/// `id:` (the last seq the message covers, for `Last-Event-ID`) and the messages of `/ws/workers/{id}`;
/// several workers' events (`/api/streams/events`) carry no `id:` and the messages of `/ws/streams`.
struct EventFormat: SubscriptionFormat {
    /// One worker, with `id:` lines; else several workers, messages naming their worker.
    let singleWorker: Bool

    var namesWorker: Bool { !singleWorker }

    func rendering(for worker: WorkerID) -> BatchRendering {
        singleWorker ? WorkerEventRendering() : NamedEventRendering(worker: worker)
    }

    func logs(_ payload: ByteBuffer, worker: WorkerID, lastSeq: UInt64) -> ByteBuffer {
        singleWorker ? Self.event(payload, id: lastSeq) : Self.event(LogsEnvelope.naming(worker, in: payload), id: nil)
    }

    func control(_ json: ByteBuffer, lastSeq: UInt64?) -> ByteBuffer {
        Self.event(json, id: singleWorker ? lastSeq : nil)
    }

    /// `id: N\ndata: JSON\n\n` (or without the `id:` line). The JSON is one line: encoded records
    /// and stored lines never hold a raw line break.
    static func event(_ json: ByteBuffer, id: UInt64?) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: json.readableBytes + 32)
        if let id {
            buffer.writeStaticString("id: ")
            buffer.writeString(String(id))
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

/// A batch as one event of `/api/workers/{id}/events`: `id: LAST\ndata: {"type":"logs","records":[…]}\n\n`.
struct WorkerEventRendering: BatchRendering {
    var key: Int { 400 }

    func render(_ batch: Batch) -> ByteBuffer {
        EventFormat.event(batch.payload, id: batch.lastSeq)
    }
}

/// A worker's batch as one event of `/api/streams/events`: `data: {"type":"logs","worker":"ID","records":[…]}\n\n`.
struct NamedEventRendering: BatchRendering {
    let worker: WorkerID

    var key: Int { 401 }

    func render(_ batch: Batch) -> ByteBuffer {
        EventFormat.event(LogsEnvelope.naming(worker, in: batch.payload), id: nil)
    }
}
