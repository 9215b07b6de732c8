import NIOCore

/// Small, allocation-free JSON writing into a `ByteBuffer`, through `RawJSONWriter` (which holds the escaping rules).
extension ByteBuffer {
    /// Writes `string` as a quoted JSON string, escaping `"`, `\` and control characters.
    @inlinable
    public mutating func writeJSONString(_ string: String) {
        var string = string
        string.withUTF8 { writeJSONString(utf8: $0) }
    }

    /// Writes already-valid UTF-8 bytes as a quoted JSON string.
    public mutating func writeJSONString(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        // Escaping makes a byte at most six bytes (\u00XX), plus the quotes.
        writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count * 6 + 2) { raw in
            var out = RawJSONWriter(base: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            out.writeString(utf8: bytes)
            return out.count
        }
    }

    /// Writes a signed integer in decimal.
    public mutating func writeJSONInteger<I: BinaryInteger>(_ value: I) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: 24) { raw in
            var out = RawJSONWriter(base: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            if value < 0 {
                out.writeInteger(Int64(value))
            } else {
                out.writeUnsigned(UInt64(value))
            }
            return out.count
        }
    }

    /// Writes a timestamp as a quoted ISO-8601 string.
    public mutating func writeJSONTimestamp(_ timestamp: Timestamp) {
        writeInteger(UInt8(ascii: "\""))
        timestamp.write(to: &self)
        writeInteger(UInt8(ascii: "\""))
    }

    /// Writes `value` in decimal, or `null`.
    public mutating func writeJSONIntegerOrNull<I: BinaryInteger>(_ value: I?) {
        if let value { writeJSONInteger(value) } else { writeStaticString("null") }
    }

    /// Writes `string` as a quoted JSON string, or `null`.
    public mutating func writeJSONStringOrNull(_ string: String?) {
        if let string { writeJSONString(string) } else { writeStaticString("null") }
    }

    /// Writes `timestamp` as a quoted ISO-8601 string, or `null`.
    public mutating func writeJSONTimestampOrNull(_ timestamp: Timestamp?) {
        if let timestamp { writeJSONTimestamp(timestamp) } else { writeStaticString("null") }
    }
}
