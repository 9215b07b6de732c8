import NIOCore

/// Small, allocation-free JSON writing into a `ByteBuffer`: the one place that knows JSON's escaping rules.
extension ByteBuffer {
    /// Writes `string` as a quoted JSON string, escaping `"`, `\` and control characters.
    @inlinable
    public mutating func writeJSONString(_ string: String) {
        var string = string
        string.withUTF8 { writeJSONString(utf8: $0) }
    }

    /// Writes already-valid UTF-8 bytes as a quoted JSON string.
    public mutating func writeJSONString(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        writeInteger(UInt8(ascii: "\""))
        var runStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            if index > runStart {
                writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<index])))
            }
            switch byte {
            case UInt8(ascii: "\""): writeStaticString("\\\"")
            case UInt8(ascii: "\\"): writeStaticString("\\\\")
            case UInt8(ascii: "\n"): writeStaticString("\\n")
            case UInt8(ascii: "\r"): writeStaticString("\\r")
            case UInt8(ascii: "\t"): writeStaticString("\\t")
            default:
                writeStaticString("\\u00")
                writeInteger(Self.hexDigit(byte >> 4))
                writeInteger(Self.hexDigit(byte & 0xF))
            }
            index += 1
            runStart = index
        }
        if count > runStart {
            writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<count])))
        }
        writeInteger(UInt8(ascii: "\""))
    }

    /// Writes a signed integer in decimal.
    public mutating func writeJSONInteger<I: BinaryInteger>(_ value: I) {
        if value == 0 {
            writeInteger(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        if value < 0 { writeInteger(UInt8(ascii: "-")) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { digits in
            var index = 40
            while magnitude > 0 {
                index -= 1
                digits[index] = UInt8(truncatingIfNeeded: 0x30 + Int(magnitude % 10))
                magnitude /= 10
            }
            writeBytes(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: digits[index..<40])))
        }
    }

    /// Writes a timestamp as a quoted ISO-8601 string.
    public mutating func writeJSONTimestamp(_ timestamp: Timestamp) {
        writeInteger(UInt8(ascii: "\""))
        timestamp.write(to: &self)
        writeInteger(UInt8(ascii: "\""))
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10
    }
}
