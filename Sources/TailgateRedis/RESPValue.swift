import NIOCore

/// One reply (or part of a reply) in the Redis serialization protocol: RESP2, plus the RESP3 types a
/// Redis 7 server may send after `HELLO 3`.
///
/// Error replies are values here (`.error`); `RedisConnection` turns them into `RedisError.server`.
public enum RESPValue: Sendable, Equatable {
    /// `+OK`: a short text without line breaks.
    case simpleString(String)
    /// `-ERR …` (and RESP3's blob error `!`): Redis's own text, e.g. `WRONGTYPE Operation against…`.
    case error(String)
    /// `:42`.
    case integer(Int64)
    /// `$5\r\nhello`: binary-safe bytes.
    case bulkString(ByteBuffer)
    /// `*2\r\n…` (and RESP3's set `~`, push `>`, which keep their own cases below).
    case array([RESPValue])
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3).
    case null
    /// RESP3 `,3.14`.
    case double(Double)
    /// RESP3 `#t` / `#f`.
    case boolean(Bool)
    /// RESP3 `(3492890328409238509324850943850943825024385`: kept as its decimal text.
    case bigNumber(String)
    /// RESP3 `=15\r\ntxt:Some string`: the three-letter format and the text.
    indirect case verbatimString(format: String, text: ByteBuffer)
    /// RESP3 `%2\r\n…`: key/value pairs in the server's order.
    case map([RESPPair])
    /// RESP3 `~3\r\n…`.
    case set([RESPValue])
    /// RESP3 `>3\r\n…`: an out-of-band message (pub/sub, client tracking), not a command's reply.
    case push([RESPValue])

    /// A bulk string holding `text`'s UTF-8 bytes.
    public static func bulkString(_ text: String) -> RESPValue {
        .bulkString(ByteBuffer(string: text))
    }

    /// The value as text: simple, bulk and verbatim strings, integers, doubles, big numbers; else `nil`.
    public var string: String? {
        switch self {
        case .simpleString(let text), .bigNumber(let text): return text
        case .bulkString(let bytes), .verbatimString(_, let bytes): return String(buffer: bytes)
        case .integer(let value): return String(value)
        case .double(let value): return String(value)
        default: return nil
        }
    }

    /// The value as an integer: integers, and strings holding a decimal integer; else `nil`.
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .boolean(let value): return value ? 1 : 0
        case .simpleString, .bulkString: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    /// The bytes of a bulk or verbatim string (or a simple string's UTF-8); else `nil`.
    public var bytes: ByteBuffer? {
        switch self {
        case .bulkString(let bytes), .verbatimString(_, let bytes): return bytes
        case .simpleString(let text): return ByteBuffer(string: text)
        default: return nil
        }
    }

    /// The elements of an array, set or push; a map's keys and values alternating (RESP2's shape of
    /// `HGETALL`); else `nil`.
    public var array: [RESPValue]? {
        switch self {
        case .array(let values), .set(let values), .push(let values): return values
        case .map(let pairs): return pairs.flatMap { [$0.key, $0.value] }
        default: return nil
        }
    }

    /// Whether the value is a null.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// One key/value pair of a RESP3 map.
public struct RESPPair: Sendable, Equatable {
    public var key: RESPValue
    public var value: RESPValue

    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
    }
}
