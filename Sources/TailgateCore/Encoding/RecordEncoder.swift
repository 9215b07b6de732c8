import NIOCore

/// Encodes a record with its sequence number into the JSON object that goes on the wire.
///
/// Field order is fixed: `seq`, `timestamp`, `level`, `message`, `logger_name`, `module`, `func_name`,
/// `line_no`, then `metadata` (keys sorted) when there is any.
///
/// The object is written in one pass through a raw pointer into space reserved once (its size bounded
/// by the worst case of escaping): this runs once per record on the publish path.
public enum RecordEncoder {
    /// Appends the JSON object for `record` to `buffer`.
    public static func encode(_ record: LogRecord, seq: UInt64, timestamp: Timestamp, into buffer: inout ByteBuffer) {
        var cache = Timestamp.TextCache()
        encode(record, seq: seq, timestamp: timestamp, into: &buffer, timestampCache: &cache)
    }

    /// Appends the JSON object for `record` to `buffer`, reusing the text of the second last written
    /// through `timestampCache` (a batch builder keeps one).
    public static func encode(_ record: LogRecord, seq: UInt64, timestamp: Timestamp, into buffer: inout ByteBuffer,
                              timestampCache: inout Timestamp.TextCache) {
        var bound = 256 + 6 * (record.message.utf8.count + record.loggerName.utf8.count + record.module.utf8.count + record.funcName.utf8.count)
        let metadata = record.metadata.map { $0.sorted { $0.key < $1.key } } ?? []
        for (key, value) in metadata { bound += 6 * (key.utf8.count + value.utf8.count) + 8 }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { raw in
            var out = RawJSONWriter(base: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            out.write("{\"seq\":")
            out.writeUnsigned(seq)
            out.write(",\"timestamp\":\"")
            timestampCache.write(timestamp, into: out.base + out.count)
            out.count += Timestamp.textLength
            out.write("\",\"level\":\"")
            out.write(record.level.wireName)
            out.write("\",\"message\":")
            out.writeString(record.message)
            out.write(",\"logger_name\":")
            out.writeString(record.loggerName)
            out.write(",\"module\":")
            out.writeString(record.module)
            out.write(",\"func_name\":")
            out.writeString(record.funcName)
            out.write(",\"line_no\":")
            out.writeInteger(Int64(record.lineNo))
            if !metadata.isEmpty {
                out.write(",\"metadata\":{")
                for (index, (key, value)) in metadata.enumerated() {
                    if index > 0 { out.write(",") }
                    out.writeString(key)
                    out.write(":")
                    out.writeString(value)
                }
                out.write("}")
            }
            out.write("}")
            return out.count
        }
    }
}

/// Writes JSON through a raw pointer into space the caller has reserved (no bounds checks: the
/// caller reserves the worst case).
struct RawJSONWriter {
    let base: UnsafeMutablePointer<UInt8>
    var count = 0

    mutating func write(_ text: StaticString) {
        (base + count).update(from: text.utf8Start, count: text.utf8CodeUnitCount)
        count += text.utf8CodeUnitCount
    }

    mutating func writeInteger(_ value: Int64) {
        if value < 0 { base[count] = UInt8(ascii: "-"); count += 1 }
        writeUnsigned(value.magnitude)
    }

    mutating func writeUnsigned(_ value: UInt64) {
        var magnitude = value
        if magnitude == 0 { base[count] = UInt8(ascii: "0"); count += 1; return }
        var digits = 0
        var probe = magnitude
        while probe > 0 { digits += 1; probe /= 10 }
        var index = count + digits - 1
        while magnitude > 0 {
            base[index] = UInt8(truncatingIfNeeded: 0x30 &+ magnitude % 10)
            magnitude /= 10
            index -= 1
        }
        count += digits
    }

    /// A quoted JSON string, escaping `"`, `\` and control characters.
    mutating func writeString(_ string: String) {
        // Native strings are contiguous: read them in place, without copying the record.
        if let done: Void = string.utf8.withContiguousStorageIfAvailable({ writeString(utf8: $0) }) { return done }
        var copy = string
        copy.withUTF8 { writeString(utf8: $0) }
    }

    mutating func writeString(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        base[count] = UInt8(ascii: "\"")
        count += 1
        var runStart = 0
        var index = 0
        let length = bytes.count
        let source = bytes.baseAddress
        while let source, index < length {
            index = JSONByteScan.firstSpecial(source, from: index, to: length)
            if index == length { break }
            let byte = source[index]
            if index > runStart {
                (base + count).update(from: source + runStart, count: index - runStart)
                count += index - runStart
            }
            base[count] = UInt8(ascii: "\\")
            switch byte {
            case 0x22: base[count + 1] = 0x22; count += 2
            case 0x5C: base[count + 1] = 0x5C; count += 2
            case 0x0A: base[count + 1] = UInt8(ascii: "n"); count += 2
            case 0x0D: base[count + 1] = UInt8(ascii: "r"); count += 2
            case 0x09: base[count + 1] = UInt8(ascii: "t"); count += 2
            default:
                base[count + 1] = UInt8(ascii: "u")
                base[count + 2] = UInt8(ascii: "0")
                base[count + 3] = UInt8(ascii: "0")
                base[count + 4] = Self.hexDigit(byte >> 4)
                base[count + 5] = Self.hexDigit(byte & 0xF)
                count += 6
            }
            index += 1
            runStart = index
        }
        if length > runStart {
            (base + count).update(from: source! + runStart, count: length - runStart)
            count += length - runStart
        }
        base[count] = UInt8(ascii: "\"")
        count += 1
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10
    }
}
