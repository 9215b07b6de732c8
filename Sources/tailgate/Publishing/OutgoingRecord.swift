import NIOCore
import TailgateCore

/// One record on its way to the gateway: a line of a program's output, or a notice of tailgate's own
/// (the exit status, lines dropped, lines rejected).
///
/// Its timestamp is the moment the line was read, so lines buffered while the gateway was away (or sent
/// again after a broken connection) keep their time.
struct OutgoingRecord: Sendable, Equatable {
    var timestamp: Timestamp
    var level: LogLevel
    var message: String
    /// `metadata` of the record, in the order it is written.
    var metadata: [Metadatum]
    /// `logger_name`: empty for the program's lines, `tailgate` for tailgate's own notices.
    var loggerName: String = ""

    struct Metadatum: Sendable, Equatable {
        var key: String
        var value: String
    }

    /// A line of the program's output; `stream` is `stdout`, `stderr` or `stdin`.
    static func line(_ text: String, stream: String, defaultLevel: LogLevel = .info, at timestamp: Timestamp = .now()) -> OutgoingRecord {
        OutgoingRecord(timestamp: timestamp, level: LineClassifier.level(of: text) ?? defaultLevel, message: text,
                       metadata: [Metadatum(key: "stream", value: stream)])
    }

    /// A record of tailgate's own, with `logger_name` `tailgate`.
    static func notice(_ level: LogLevel, _ message: String, metadata: [(String, String)] = [], at timestamp: Timestamp = .now()) -> OutgoingRecord {
        OutgoingRecord(timestamp: timestamp, level: level, message: message,
                       metadata: metadata.map { Metadatum(key: $0.0, value: $0.1) }, loggerName: "tailgate")
    }

    /// The record that stands for `count` lines dropped from a full buffer.
    static func dropped(_ count: Int, at timestamp: Timestamp = .now()) -> OutgoingRecord {
        notice(.warning, "\(count) line\(count == 1 ? "" : "s") dropped while the gateway was unreachable",
               metadata: [("dropped", String(count))], at: timestamp)
    }

    /// Writes the record as one NDJSON line, newline included.
    func writeNDJSON(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"timestamp\":\"")
        timestamp.write(to: &buffer)
        buffer.writeStaticString("\",\"level\":\"")
        buffer.writeString(level.rawValue)
        buffer.writeStaticString("\",\"message\":")
        buffer.writeJSONString(message)
        if !loggerName.isEmpty {
            buffer.writeStaticString(",\"logger_name\":")
            buffer.writeJSONString(loggerName)
        }
        if !metadata.isEmpty {
            buffer.writeStaticString(",\"metadata\":{")
            for (index, item) in metadata.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                buffer.writeJSONString(item.key)
                buffer.writeStaticString(":")
                buffer.writeJSONString(item.value)
            }
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("}\n")
    }
}
