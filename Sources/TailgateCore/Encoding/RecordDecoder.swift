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
    ///
    /// Reads the object in one pass straight into a `LogRecord` (no intermediate dictionary): this is
    /// the hot path of HTTP ingest.
    public static func decodeJSONLine(_ line: UnsafeBufferPointer<UInt8>) throws(Rejection) -> LogRecord {
        var parser = JSONParser(bytes: line)
        do {
            return try decodeObject(&parser)
        } catch let error as JSONParseError {
            throw Rejection("invalid JSON: \(error)")
        } catch let rejection as Rejection {
            throw rejection
        } catch {
            throw Rejection("invalid JSON")
        }
    }

    private static func decodeObject(_ parser: inout JSONParser) throws -> LogRecord {
        parser.skipSpace()
        guard parser.peek == UInt8(ascii: "{") else {
            // Not an object: still report invalid JSON first, as a full parse would.
            _ = try parser.parseValue()
            parser.skipSpace()
            guard parser.index == parser.bytes.count else { throw parser.error("unexpected data after the JSON value") }
            throw Rejection("a line must be a JSON object")
        }
        parser.index += 1
        parser.depth += 1
        var message: String?
        var record = LogRecord(message: "")
        var firstMember = true
        members: while true {
            parser.skipSpace()
            if firstMember, parser.peek == UInt8(ascii: "}") { parser.index += 1; break members }
            guard parser.peek == UInt8(ascii: "\"") else { throw parser.error("expected a string key") }
            let key = try parser.parseString()
            parser.skipSpace()
            guard parser.peek == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
            parser.index += 1
            parser.skipSpace()
            switch key {
            case "message":
                message = try stringValue(&parser, key, nullAllowed: false)
            case "level":
                if let name = try stringValue(&parser, key, nullAllowed: false) {
                    guard let level = LogLevel(name: name) else {
                        throw Rejection("unknown level '\(name.prefix(40))' (expected TRACE, DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL)")
                    }
                    record.level = level
                }
            case "timestamp":
                if let text = try stringValue(&parser, key, nullAllowed: true, message: "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z") {
                    guard let timestamp = Timestamp(iso8601: text) else {
                        throw Rejection("'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z")
                    }
                    record.timestamp = timestamp
                }
            case "logger_name":
                record.loggerName = try stringValue(&parser, key, nullAllowed: true) ?? ""
            case "module":
                record.module = try stringValue(&parser, key, nullAllowed: true) ?? ""
            case "func_name":
                record.funcName = try stringValue(&parser, key, nullAllowed: true) ?? ""
            case "line_no":
                let value = try parser.parseValue()
                if value != .null {
                    guard let number = value.intValue else { throw Rejection("'line_no' must be a whole number") }
                    record.lineNo = number
                }
            case "metadata":
                let value = try parser.parseValue()
                if value != .null {
                    guard case .object(let members) = value else { throw Rejection("'metadata' must be an object of strings") }
                    var strings: [String: String] = [:]
                    for (name, member) in members {
                        guard case .string(let text) = member else { throw Rejection("metadata '\(name.prefix(40))' must be a string") }
                        strings[name] = text
                    }
                    record.metadata = strings.isEmpty ? nil : strings
                }
            default:
                _ = try parser.parseValue()
            }
            firstMember = false
            parser.skipSpace()
            switch parser.peek {
            case UInt8(ascii: ","): parser.index += 1
            case UInt8(ascii: "}"): parser.index += 1; break members
            case nil: throw parser.error("unexpected end of JSON")
            default: throw parser.error("expected ',' or '}'")
            }
        }
        parser.skipSpace()
        guard parser.index == parser.bytes.count else { throw parser.error("unexpected data after the JSON value") }
        guard let message else { throw Rejection("missing 'message'") }
        record.message = message
        return record
    }

    /// A string member's value; `nil` for `null` when allowed. Wrong types are rejected, but the
    /// value is still parsed first so that invalid JSON is reported as such.
    private static func stringValue(_ parser: inout JSONParser, _ key: String, nullAllowed: Bool, message: String? = nil) throws -> String? {
        if parser.peek == UInt8(ascii: "\"") { return try parser.parseString() }
        let value = try parser.parseValue()
        if value == .null && nullAllowed { return nil }
        throw Rejection(message ?? "'\(key)' must be a string")
    }

    /// Decodes one plain-text line: an `INFO` record whose message is the line (ANSI codes kept).
    public static func decodeTextLine(_ line: UnsafeBufferPointer<UInt8>) throws(Rejection) -> LogRecord {
        guard let text = String(validating: line, as: UTF8.self) else { throw Rejection("invalid UTF-8") }
        return LogRecord(level: .info, message: text)
    }
}
