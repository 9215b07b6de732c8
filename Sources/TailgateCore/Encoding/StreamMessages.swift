import NIOCore

/// The JSON of the stream's control messages (`hello`, `gap`, `end`); `logs` messages are `Batch`es.
public enum StreamMessages {
    /// `{"type":"hello",…}`: always the first message of a stream.
    /// `resumed`: whether a client's `epoch=E&since=S` resumed run E (`nil`: it gave no epoch), and why not.
    public static func hello(_ worker: WorkerSnapshot, replayFrom: UInt64, resumed: (Bool, reason: String?)? = nil,
                             serverTime: Timestamp = .now()) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        buffer.writeStaticString("{\"type\":\"hello\",\"worker\":")
        buffer.writeJSONString(worker.id.rawValue)
        buffer.writeStaticString(",\"state\":\"")
        buffer.writeString(worker.state.rawValue)
        buffer.writeStaticString("\",\"first_seq\":")
        buffer.writeJSONInteger(worker.firstSeq)
        buffer.writeStaticString(",\"last_seq\":")
        buffer.writeJSONInteger(worker.lastSeq)
        buffer.writeStaticString(",\"replay_from\":")
        buffer.writeJSONInteger(replayFrom)
        buffer.writeStaticString(",\"server_time\":")
        buffer.writeJSONTimestamp(serverTime)
        buffer.writeStaticString(",\"epoch\":")
        buffer.writeJSONString(worker.epoch)
        buffer.writeStaticString(",\"status\":\"")
        buffer.writeString(worker.status.rawValue)
        buffer.writeStaticString("\"")
        if let (resumed, reason) = resumed {
            buffer.writeStaticString(resumed ? ",\"resumed\":true" : ",\"resumed\":false")
            if let reason {
                buffer.writeStaticString(",\"reason\":")
                buffer.writeJSONString(reason)
            }
        }
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"type":"gap","from":A,"to":B,"reason":"evicted"}`.
    public static func gap(from: UInt64, to: UInt64) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 80)
        buffer.writeStaticString("{\"type\":\"gap\",\"from\":")
        buffer.writeJSONInteger(from)
        buffer.writeStaticString(",\"to\":")
        buffer.writeJSONInteger(to)
        buffer.writeStaticString(",\"reason\":\"evicted\"}")
        return buffer
    }

    /// `{"type":"end","worker":ID,"last_seq":L,"reason":"worker stopped","epoch":E,"status":"stopped","exit_code":null}`.
    public static func end(worker: WorkerID, lastSeq: UInt64, epoch: String, ending: RunEnding) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 160)
        buffer.writeStaticString("{\"type\":\"end\",\"worker\":")
        buffer.writeJSONString(worker.rawValue)
        buffer.writeStaticString(",\"last_seq\":")
        buffer.writeJSONInteger(lastSeq)
        buffer.writeStaticString(",\"reason\":")
        buffer.writeJSONString(ending.reason)
        buffer.writeStaticString(",\"epoch\":")
        buffer.writeJSONString(epoch)
        buffer.writeStaticString(",\"status\":\"")
        buffer.writeString(ending.status.rawValue)
        buffer.writeStaticString("\",\"exit_code\":")
        buffer.writeJSONIntegerOrNull(ending.exitCode)
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"type":"gap","worker":ID,"from":A,"to":B,"reason":"evicted"}`: a `gap` on a connection that
    /// carries several workers (`/ws/streams`).
    public static func gap(worker: WorkerID, from: UInt64, to: UInt64) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 100 + worker.rawValue.utf8.count)
        buffer.writeStaticString("{\"type\":\"gap\",\"worker\":")
        buffer.writeJSONString(worker.rawValue)
        buffer.writeStaticString(",\"from\":")
        buffer.writeJSONInteger(from)
        buffer.writeStaticString(",\"to\":")
        buffer.writeJSONInteger(to)
        buffer.writeStaticString(",\"reason\":\"evicted\"}")
        return buffer
    }

    /// `{"type":"unsubscribed","worker":ID}`: nothing of the worker follows on this connection.
    public static func unsubscribed(worker: WorkerID) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 40 + worker.rawValue.utf8.count)
        buffer.writeStaticString("{\"type\":\"unsubscribed\",\"worker\":")
        buffer.writeJSONString(worker.rawValue)
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"type":"error","worker":W,"code":C,"message":M}`: a subscription to `worker` (an id or a
    /// pattern, as the client wrote it) could not be made; the connection stays open.
    public static func subscriptionError(worker: String, code: String, message: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 80 + worker.utf8.count + code.utf8.count + message.utf8.count)
        buffer.writeStaticString("{\"type\":\"error\",\"worker\":")
        buffer.writeJSONString(worker)
        buffer.writeStaticString(",\"code\":")
        buffer.writeJSONString(code)
        buffer.writeStaticString(",\"message\":")
        buffer.writeJSONString(message)
        buffer.writeStaticString("}")
        return buffer
    }
}
