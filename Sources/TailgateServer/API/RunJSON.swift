import NIOCore
import TailgateCore

/// The `Run` object of the REST API (docs/PROTOCOL.md, "Runs").
enum RunJSON {
    /// `,"status":"…","exit_code":N|null,"reason":"…"|null`: how a run stands, in a `Run` or a `Worker`.
    static func writeOutcome(_ status: RunStatus, exitCode: Int?, reason: String?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(",\"status\":\"")
        buffer.writeString(status.rawValue)
        buffer.writeStaticString("\",\"exit_code\":")
        buffer.writeJSONIntegerOrNull(exitCode)
        buffer.writeStaticString(",\"reason\":")
        buffer.writeJSONStringOrNull(reason)
    }

    static func write(_ run: RunInfo, current: Bool, pathPrefix: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"epoch\":")
        buffer.writeJSONString(run.id.epoch)
        writeOutcome(run.status, exitCode: run.exitCode, reason: run.reason, into: &buffer)
        buffer.writeStaticString(",\"owner\":\"")
        buffer.writeString(run.owner.rawValue)
        buffer.writeStaticString("\",\"started_at\":")
        buffer.writeJSONTimestamp(run.startedAt)
        buffer.writeStaticString(",\"stopped_at\":")
        buffer.writeJSONTimestampOrNull(run.stoppedAt)
        buffer.writeStaticString(",\"first_seq\":")
        buffer.writeJSONInteger(run.firstSeq)
        buffer.writeStaticString(",\"last_seq\":")
        buffer.writeJSONInteger(run.lastSeq)
        buffer.writeStaticString(",\"records\":")
        buffer.writeJSONInteger(run.storedRecords)
        buffer.writeStaticString(",\"stored_bytes\":")
        buffer.writeJSONInteger(run.storedBytes)
        buffer.writeStaticString(current ? ",\"current\":true" : ",\"current\":false")
        let base = "/\(run.id.worker.rawValue)/runs/\(run.id.epoch)"
        buffer.writeStaticString(",\"log_stream_path\":")
        buffer.writeJSONString(pathPrefix + "/ws/workers" + base)
        buffer.writeStaticString(",\"logs_path\":")
        buffer.writeJSONString(pathPrefix + "/api/workers" + base + "/logs")
        buffer.writeStaticString("}")
    }

    static func one(_ run: RunInfo, current: Bool, pathPrefix: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        write(run, current: current, pathPrefix: pathPrefix, into: &buffer)
        buffer.writeStaticString("\n")
        return buffer
    }

    static func list(_ worker: WorkerID, runs: [RunInfo], current: String, pathPrefix: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64 + runs.count * 512)
        buffer.writeStaticString("{\"worker\":")
        buffer.writeJSONString(worker.rawValue)
        buffer.writeStaticString(",\"runs\":[")
        for (index, run) in runs.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            write(run, current: run.id.epoch == current, pathPrefix: pathPrefix, into: &buffer)
        }
        buffer.writeStaticString("]}\n")
        return buffer
    }
}
