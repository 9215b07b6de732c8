#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        var repeated = RepeatedValues()
        return try decodeJSONLine(line, reusing: &repeated)
    }

    /// What the previous line held that the next one most likely repeats: its `logger_name`, `module`
    /// and `func_name` (an equal value reuses the string made before: no allocation, no validation)
    /// and its timestamp's date and time to the second.
    public struct RepeatedValues {
        var loggerName = ""
        var module = ""
        var funcName = ""
        var timestamps = Timestamp.ParseCache()

        public init() {}
    }

    /// Decodes one NDJSON line, reusing strings equal to those of the previous line (see `RepeatedValues`).
    public static func decodeJSONLine(_ line: UnsafeBufferPointer<UInt8>, reusing repeated: inout RepeatedValues) throws(Rejection) -> LogRecord {
        var parser = JSONParser(bytes: line)
        do {
            return try decodeObject(&parser, &repeated)
        } catch let error as JSONParseError {
            throw Rejection("invalid JSON: \(error)")
        } catch let rejection as Rejection {
            throw rejection
        } catch {
            throw Rejection("invalid JSON")
        }
    }

    private static func decodeObject(_ parser: inout JSONParser, _ repeated: inout RepeatedValues) throws -> LogRecord {
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
            let field = try Field(&parser)
            parser.skipSpace()
            guard parser.peek == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
            parser.index += 1
            parser.skipSpace()
            switch field {
            case .message:
                message = try stringValue(&parser, "message", nullAllowed: false)
            case .level:
                if let raw = try plainString(&parser) {
                    guard let level = LogLevel(nameUTF8: raw) else { throw unknownLevel(raw, &parser) }
                    record.level = level
                } else if let name = try stringValue(&parser, "level", nullAllowed: false) {
                    guard let level = LogLevel(name: name) else { throw unknownLevel(name) }
                    record.level = level
                }
            case .timestamp:
                if let raw = try plainString(&parser) {
                    guard let timestamp = Timestamp(iso8601UTF8: raw, cache: &repeated.timestamps) else {
                        guard UTF8Validation.isValid(raw) else { throw parser.error("invalid UTF-8 in string") }
                        throw Rejection(badTimestamp)
                    }
                    record.timestamp = timestamp
                } else if let text = try stringValue(&parser, "timestamp", nullAllowed: true, message: badTimestamp) {
                    guard let timestamp = Timestamp(iso8601: text) else { throw Rejection(badTimestamp) }
                    record.timestamp = timestamp
                }
            case .loggerName:
                record.loggerName = try repeatedString(&parser, "logger_name", &repeated.loggerName)
            case .module:
                record.module = try repeatedString(&parser, "module", &repeated.module)
            case .funcName:
                record.funcName = try repeatedString(&parser, "func_name", &repeated.funcName)
            case .lineNo:
                if let number = parser.scanWholeNumber() {
                    record.lineNo = number
                    break
                }
                let value = try parser.parseValue()
                if value != .null {
                    guard let number = value.intValue else { throw Rejection("'line_no' must be a whole number") }
                    record.lineNo = number
                }
            case .metadata:
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
            case .other:
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

    /// An optional string member's value (`""` for `null`), reusing `previous` when the bytes are equal.
    private static func repeatedString(_ parser: inout JSONParser, _ key: String, _ previous: inout String) throws -> String {
        if let raw = try plainString(&parser) {
            let same = previous.utf8.count == raw.count && previous.utf8.withContiguousStorageIfAvailable {
                raw.count == 0 || memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0
            } == true
            if same { return previous }
            guard let text = UTF8Validation.string(raw) else { throw parser.error("invalid UTF-8 in string") }
            previous = text
            return text
        }
        return try stringValue(&parser, key, nullAllowed: true) ?? ""
    }

    private static let badTimestamp = "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"

    /// A string value without escapes, as raw bytes (not yet validated as UTF-8); `nil`, cursor
    /// unmoved, for anything else.
    private static func plainString(_ parser: inout JSONParser) throws -> UnsafeBufferPointer<UInt8>? {
        guard parser.peek == UInt8(ascii: "\""), let range = try parser.scanPlainString() else { return nil }
        return parser.slice(range)
    }

    private static func unknownLevel(_ raw: UnsafeBufferPointer<UInt8>, _ parser: inout JSONParser) -> Error {
        guard let name = UTF8Validation.string(raw) else { return parser.error("invalid UTF-8 in string") }
        return unknownLevel(name)
    }

    private static func unknownLevel(_ name: String) -> Rejection {
        Rejection("unknown level '\(name.prefix(40))' (expected TRACE, DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL)")
    }

    /// The members a record reads, recognised from the key's bytes (no string is made for a key).
    private enum Field {
        case message, level, timestamp, loggerName, module, funcName, lineNo, metadata, other

        init(_ parser: inout JSONParser) throws {
            // The common case: a known key followed by its closing quote, recognised without a scan.
            if let known = Self.known(&parser) {
                self = known
                return
            }
            guard let range = try parser.scanPlainString() else {
                // A key with escapes: compare its decoded text.
                switch try parser.parseString() {
                case "message": self = .message
                case "level": self = .level
                case "timestamp": self = .timestamp
                case "logger_name": self = .loggerName
                case "module": self = .module
                case "func_name": self = .funcName
                case "line_no": self = .lineNo
                case "metadata": self = .metadata
                default: self = .other
                }
                return
            }
            // A plain key that `known` did not recognise is none of ours.
            let key = parser.slice(range)
            self = .other
            if !UTF8Validation.isValid(key) {
                parser.index = range.upperBound
                throw parser.error("invalid UTF-8 in string")
            }
        }

        /// With the cursor on a key's opening quote: the field when the key is one of ours written
        /// plainly (cursor moved past its closing quote), else `nil` (cursor unmoved).
        private static func known(_ parser: inout JSONParser) -> Field? {
            let start = parser.index + 1
            guard start < parser.bytes.count, let base = parser.bytes.baseAddress else { return nil }
            let available = parser.bytes.count - start
            func take(_ name: StaticString, _ field: Field) -> Field? {
                let length = name.utf8CodeUnitCount
                guard length <= available, memcmp(base + start, name.utf8Start, length) == 0 else { return nil }
                parser.index = start + length
                return field
            }
            switch base[start] {
            case UInt8(ascii: "m"): return take("message\"", .message) ?? take("module\"", .module) ?? take("metadata\"", .metadata)
            case UInt8(ascii: "l"): return take("level\"", .level) ?? take("logger_name\"", .loggerName) ?? take("line_no\"", .lineNo)
            case UInt8(ascii: "t"): return take("timestamp\"", .timestamp)
            case UInt8(ascii: "f"): return take("func_name\"", .funcName)
            default: return nil
            }
        }
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
