import NIOCore
import TailgateCore

/// The `Worker` object of the REST API.
enum WorkerJSON {
    /// Writes one worker; `streamBase` is `ws://HOST` (or `wss://…`) for `log_stream_url`.
    static func write(_ worker: WorkerSnapshot, streamBase: String, pathPrefix: String, into buffer: inout ByteBuffer) {
        let path = pathPrefix + Route.streamPath(of: worker.id)
        buffer.writeStaticString("{\"id\":")
        buffer.writeJSONString(worker.id.rawValue)
        buffer.writeStaticString(",\"state\":\"")
        buffer.writeString(worker.state.rawValue)
        buffer.writeStaticString("\",\"log_stream_path\":")
        buffer.writeJSONString(path)
        buffer.writeStaticString(",\"log_stream_url\":")
        buffer.writeJSONString(streamBase + path)
        buffer.writeStaticString(",\"subscribers\":")
        buffer.writeJSONInteger(worker.subscribers)
        buffer.writeStaticString(",\"first_seq\":")
        buffer.writeJSONInteger(worker.firstSeq)
        buffer.writeStaticString(",\"last_seq\":")
        buffer.writeJSONInteger(worker.lastSeq)
        buffer.writeStaticString(",\"records_total\":")
        buffer.writeJSONInteger(worker.lastSeq)  // every seq ever given: seqs start at 1
        buffer.writeStaticString(",\"started_at\":")
        buffer.writeJSONTimestamp(worker.startedAt)
        buffer.writeStaticString(",\"stopped_at\":")
        buffer.writeJSONTimestampOrNull(worker.stoppedAt)
        buffer.writeStaticString(",\"epoch\":")
        buffer.writeJSONString(worker.epoch)
        buffer.writeStaticString(",\"owner\":\"")
        buffer.writeString(worker.owner.rawValue)
        buffer.writeStaticString("\",\"ring_records\":")
        buffer.writeJSONInteger(worker.ringRecords)
        buffer.writeStaticString(",\"ring_bytes\":")
        buffer.writeJSONInteger(worker.ringBytes)
        buffer.writeStaticString(",\"records_dropped\":")
        buffer.writeJSONInteger(worker.droppedBeforeRing)
        RunJSON.writeOutcome(worker.status, exitCode: worker.exitCode, reason: worker.reason, into: &buffer)
        buffer.writeStaticString("}")
    }

    static func one(_ worker: WorkerSnapshot, streamBase: String, pathPrefix: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        write(worker, streamBase: streamBase, pathPrefix: pathPrefix, into: &buffer)
        buffer.writeStaticString("\n")
        return buffer
    }

    static func list(_ workers: [WorkerSnapshot], streamBase: String, pathPrefix: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64 + workers.count * 512)
        buffer.writeStaticString("{\"workers\":[")
        for (index, worker) in workers.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            write(worker, streamBase: streamBase, pathPrefix: pathPrefix, into: &buffer)
        }
        buffer.writeStaticString("]}\n")
        return buffer
    }
}
