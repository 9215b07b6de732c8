/// Reads the records other processes publish: one NDJSON line, or one plain-text line.
///
/// An NDJSON line is an object with `message` (string, required) and optional `level`, `timestamp`
/// (ISO-8601), `logger_name`, `module`, `func_name` (strings), `line_no` (whole number) and `metadata`
/// (object of strings). Other fields are ignored; `seq` is always the gateway's.
public enum RecordDecoder {
    /// Why a line was rejected, for the publisher.
    public struct Rejection: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
        init(_ message: String) { self.message = message }
    }

    /// Decodes one NDJSON line (without its newline).
    public static func decodeJSONLine(_ line: UnsafeBufferPointer<UInt8>) throws(Rejection) -> LogRecord {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch {
            throw Rejection("invalid JSON: \(error)")
        }
        guard case .object(let fields) = value else { throw Rejection("a line must be a JSON object") }
        guard let messageValue = fields["message"] else { throw Rejection("missing 'message'") }
        guard case .string(let message) = messageValue else { throw Rejection("'message' must be a string") }
        var record = LogRecord(message: message)
        if let level = fields["level"] {
            guard case .string(let name) = level else { throw Rejection("'level' must be a string") }
            guard let parsed = LogLevel(name: name) else {
                throw Rejection("unknown level '\(name.prefix(40))' (expected TRACE, DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL)")
            }
            record.level = parsed
        }
        if let timestamp = fields["timestamp"], timestamp != .null {
            guard case .string(let text) = timestamp, let parsed = Timestamp(iso8601: text) else {
                throw Rejection("'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z")
            }
            record.timestamp = parsed
        }
        record.loggerName = try string(fields, "logger_name")
        record.module = try string(fields, "module")
        record.funcName = try string(fields, "func_name")
        if let lineNo = fields["line_no"], lineNo != .null {
            guard let number = lineNo.intValue else { throw Rejection("'line_no' must be a whole number") }
            record.lineNo = number
        }
        if let metadata = fields["metadata"], metadata != .null {
            guard case .object(let members) = metadata else { throw Rejection("'metadata' must be an object of strings") }
            var strings: [String: String] = [:]
            for (key, member) in members {
                guard case .string(let text) = member else { throw Rejection("metadata '\(key.prefix(40))' must be a string") }
                strings[key] = text
            }
            record.metadata = strings.isEmpty ? nil : strings
        }
        return record
    }

    private static func string(_ fields: [String: JSONValue], _ name: String) throws(Rejection) -> String {
        guard let value = fields[name], value != .null else { return "" }
        guard case .string(let text) = value else { throw Rejection("'\(name)' must be a string") }
        return text
    }

    /// Decodes one plain-text line: an `INFO` record whose message is the line (ANSI codes kept).
    public static func decodeTextLine(_ line: UnsafeBufferPointer<UInt8>) throws(Rejection) -> LogRecord {
        guard let text = String(validating: line, as: UTF8.self) else { throw Rejection("invalid UTF-8") }
        return LogRecord(level: .info, message: text)
    }
}
