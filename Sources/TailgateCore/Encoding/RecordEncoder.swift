import NIOCore

/// Encodes a record with its sequence number into the JSON object that goes on the wire.
///
/// Field order is fixed: `seq`, `timestamp`, `level`, `message`, `logger_name`, `module`, `func_name`,
/// `line_no`, then `metadata` (keys sorted) when there is any.
public enum RecordEncoder {
    /// Appends the JSON object for `record` to `buffer`. The record's `timestamp` must be set.
    public static func encode(_ record: LogRecord, seq: UInt64, timestamp: Timestamp, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"seq\":")
        buffer.writeJSONInteger(seq)
        buffer.writeStaticString(",\"timestamp\":")
        buffer.writeJSONTimestamp(timestamp)
        buffer.writeStaticString(",\"level\":\"")
        buffer.writeString(record.level.rawValue)
        buffer.writeStaticString("\",\"message\":")
        buffer.writeJSONString(record.message)
        buffer.writeStaticString(",\"logger_name\":")
        buffer.writeJSONString(record.loggerName)
        buffer.writeStaticString(",\"module\":")
        buffer.writeJSONString(record.module)
        buffer.writeStaticString(",\"func_name\":")
        buffer.writeJSONString(record.funcName)
        buffer.writeStaticString(",\"line_no\":")
        buffer.writeJSONInteger(record.lineNo)
        if let metadata = record.metadata, !metadata.isEmpty {
            buffer.writeStaticString(",\"metadata\":{")
            var first = true
            for key in metadata.keys.sorted() {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                buffer.writeJSONString(key)
                buffer.writeInteger(UInt8(ascii: ":"))
                buffer.writeJSONString(metadata[key]!)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }
}
