import NIOCore
import TailgateCore

/// How the messages of a connection's subscriptions go on the wire: WebSocket frames that name their
/// worker (`/ws/streams`), Server-Sent Events of one worker, or of several.
protocol SubscriptionFormat: Sendable {
    /// Whether every message names its worker (then `gap` carries `worker` too).
    var namesWorker: Bool { get }
    /// The rendering of `worker`'s batches: made once per batch and shared by every connection that
    /// uses the same format.
    func rendering(for worker: WorkerID) -> BatchRendering
    /// A `logs` message (`payload`, as `Batch.payload(from:)` makes it) for this connection alone.
    func logs(_ payload: ByteBuffer, worker: WorkerID, lastSeq: UInt64) -> ByteBuffer
    /// A control message (`hello`, `gap`, `end`, `error`, `unsubscribed`); `lastSeq`: the last seq it
    /// covers, when it covers any (an event's `id`).
    func control(_ json: ByteBuffer, lastSeq: UInt64?) -> ByteBuffer
}

/// The `logs` envelope with the worker named: `{"type":"logs","worker":"ID","records":[…]}`.
enum LogsEnvelope {
    private static let plainHead: StaticString = "{\"type\":\"logs\","

    /// `payload` (a `logs` message as a `Batch` holds it) with `"worker":ID` after its type: one copy.
    static func naming(_ worker: WorkerID, in payload: ByteBuffer) -> ByteBuffer {
        let headLength = plainHead.utf8CodeUnitCount
        var buffer = ByteBufferAllocator().buffer(capacity: payload.readableBytes + worker.rawValue.utf8.count + 12)
        buffer.writeStaticString(plainHead)
        buffer.writeStaticString("\"worker\":")
        buffer.writeJSONString(worker.rawValue)
        buffer.writeInteger(UInt8(ascii: ","))
        buffer.writeImmutableBuffer(payload.getSlice(at: payload.readerIndex + headLength, length: payload.readableBytes - headLength)!)
        return buffer
    }
}
