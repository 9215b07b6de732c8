import NIOCore

/// Writes commands as RESP arrays of bulk strings (`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`),
/// straight into a `ByteBuffer`.
public enum RESPEncoder {
    /// Appends `command` to `buffer`.
    public static func write(_ command: RedisCommand, into buffer: inout ByteBuffer) {
        writeHeader(UInt8(ascii: "*"), UInt64(command.arguments.count), into: &buffer)
        for argument in command.arguments {
            switch argument {
            case .string(let text):
                writeHeader(UInt8(ascii: "$"), UInt64(text.utf8.count), into: &buffer)
                buffer.writeString(text)
            case .bytes(let bytes):
                writeHeader(UInt8(ascii: "$"), UInt64(bytes.readableBytes), into: &buffer)
                buffer.writeImmutableBuffer(bytes)
            case .integer(let value):
                let magnitude = value.magnitude
                writeHeader(UInt8(ascii: "$"), UInt64(digitCount(magnitude) + (value < 0 ? 1 : 0)), into: &buffer)
                if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
                writeDecimal(magnitude, into: &buffer)
            case .unsigned(let value):
                writeHeader(UInt8(ascii: "$"), UInt64(digitCount(value)), into: &buffer)
                writeDecimal(value, into: &buffer)
            }
            buffer.writeStaticString("\r\n")
        }
    }

    /// How many bytes `command` takes encoded (to size a buffer).
    public static func encodedSize(_ command: RedisCommand) -> Int {
        var size = 3 + digitCount(UInt64(command.arguments.count))
        for argument in command.arguments {
            let length: Int
            switch argument {
            case .string(let text): length = text.utf8.count
            case .bytes(let bytes): length = bytes.readableBytes
            case .integer(let value): length = digitCount(value.magnitude) + (value < 0 ? 1 : 0)
            case .unsigned(let value): length = digitCount(value)
            }
            size += 5 + digitCount(UInt64(length)) + length
        }
        return size
    }

    /// Writes `marker`, `count` in decimal and CRLF in one copy (from a small stack buffer).
    private static func writeHeader(_ marker: UInt8, _ count: UInt64, into buffer: inout ByteBuffer) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { scratch in
            var end = 23
            scratch[end] = 0x0A
            end -= 1
            scratch[end] = 0x0D
            var rest = count
            repeat {
                end -= 1
                scratch[end] = UInt8(truncatingIfNeeded: rest % 10) &+ 0x30
                rest /= 10
            } while rest > 0
            end -= 1
            scratch[end] = marker
            buffer.writeBytes(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: scratch[end...])))
        }
    }

    static func digitCount(_ value: UInt64) -> Int {
        var count = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            count += 1
        }
        return count
    }

    /// Writes `value` in decimal without making a `String`.
    static func writeDecimal(_ value: UInt64, into buffer: inout ByteBuffer) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { scratch in
            var start = 20
            var rest = value
            repeat {
                start -= 1
                scratch[start] = UInt8(truncatingIfNeeded: rest % 10) &+ 0x30
                rest /= 10
            } while rest > 0
            buffer.writeBytes(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: scratch[start...])))
        }
    }
}
