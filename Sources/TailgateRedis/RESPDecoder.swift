import NIOCore

/// Reads RESP replies (RESP2 and the RESP3 types of Redis 7) from a byte stream, one `RESPValue` per
/// reply. Bounded: lengths, element counts, nesting and line lengths above `Limits` are refused with
/// `RedisError.protocolViolation` before anything is allocated for them; malformed bytes are refused
/// the same way, never trapped on.
public struct RESPDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = RESPValue

    /// The most the decoder accepts from a server.
    public struct Limits: Sendable {
        /// The longest bulk string, blob error or verbatim string (Redis's own `proto-max-bulk-len`
        /// default is 512 MiB).
        public var maxBulkLength: Int = 512 << 20
        /// The most elements of one array, set, push or map (pairs count twice).
        public var maxElements: Int = 1 << 24
        /// How deeply aggregates may nest (a stream read is 5 deep).
        public var maxDepth: Int = 32
        /// The longest simple line (`+…`, `-…`, `:…`, lengths), CRLF included.
        public var maxLineLength: Int = 64 << 10

        public init() {}
    }

    public let limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// Reads one whole reply from `buffer`, moving its reader index past it; `nil` (and `buffer`
    /// untouched) while the reply is incomplete.
    public func next(from buffer: inout ByteBuffer) throws(RedisError) -> RESPValue? {
        var cursor = buffer
        guard let value = try parse(&cursor, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: cursor.readerIndex)
        return value
    }

    private func parse(_ buffer: inout ByteBuffer, depth: Int) throws(RedisError) -> RESPValue? {
        guard let marker = buffer.readInteger(as: UInt8.self) else { return nil }
        switch marker {
        case UInt8(ascii: "+"):
            return try readLine(&buffer).map { .simpleString(String(buffer: $0)) }
        case UInt8(ascii: "-"):
            return try readLine(&buffer).map { .error(String(buffer: $0)) }
        case UInt8(ascii: ":"):
            guard let line = try readLine(&buffer) else { return nil }
            return .integer(try Self.integer(line, what: "integer"))
        case UInt8(ascii: "$"):
            guard let length = try readLength(&buffer, allowsNull: true) else { return nil }
            if length < 0 { return .null }
            return try readBlob(&buffer, length: length).map { .bulkString($0) }
        case UInt8(ascii: "!"):
            guard let length = try readLength(&buffer, allowsNull: false) else { return nil }
            return try readBlob(&buffer, length: length).map { .error(String(buffer: $0)) }
        case UInt8(ascii: "="):
            guard let length = try readLength(&buffer, allowsNull: false) else { return nil }
            guard var blob = try readBlob(&buffer, length: length) else { return nil }
            guard blob.readableBytes >= 4, blob.getInteger(at: blob.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":") else {
                throw .protocolViolation("a verbatim string without its \"fmt:\" prefix")
            }
            let format = blob.readString(length: 3) ?? ""
            blob.moveReaderIndex(forwardBy: 1)
            return .verbatimString(format: format, text: blob)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            guard let count = try readLength(&buffer, allowsNull: marker == UInt8(ascii: "*"), elementsPerItem: 1) else { return nil }
            if count < 0 { return .null }
            guard let values = try readElements(&buffer, count: count, depth: depth) else { return nil }
            switch marker {
            case UInt8(ascii: "~"): return .set(values)
            case UInt8(ascii: ">"): return .push(values)
            default: return .array(values)
            }
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard let count = try readLength(&buffer, allowsNull: false, elementsPerItem: 2) else { return nil }
            guard let values = try readElements(&buffer, count: count * 2, depth: depth) else { return nil }
            if marker == UInt8(ascii: "|") {
                // Attributes describe the reply that follows them: the caller gets that reply.
                return try parse(&buffer, depth: depth)
            }
            return .map(stride(from: 0, to: values.count, by: 2).map { RESPPair(key: values[$0], value: values[$0 + 1]) })
        case UInt8(ascii: "_"):
            guard let line = try readLine(&buffer) else { return nil }
            guard line.readableBytes == 0 else { throw .protocolViolation("a null with content") }
            return .null
        case UInt8(ascii: "#"):
            guard let line = try readLine(&buffer) else { return nil }
            switch line.readableBytesView.first {
            case UInt8(ascii: "t") where line.readableBytes == 1: return .boolean(true)
            case UInt8(ascii: "f") where line.readableBytes == 1: return .boolean(false)
            default: throw .protocolViolation("a boolean that is neither t nor f")
            }
        case UInt8(ascii: ","):
            guard let line = try readLine(&buffer) else { return nil }
            let text = String(buffer: line)
            guard let value = Double(text) else { throw .protocolViolation("a double that is not a number") }
            return .double(value)
        case UInt8(ascii: "("):
            guard let line = try readLine(&buffer) else { return nil }
            let text = String(buffer: line)
            let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw .protocolViolation("a big number that is not decimal")
            }
            return .bigNumber(text)
        default:
            throw .protocolViolation("unknown type byte 0x\(String(marker, radix: 16))")
        }
    }

    private func readElements(_ buffer: inout ByteBuffer, count: Int, depth: Int) throws(RedisError) -> [RESPValue]? {
        guard depth < limits.maxDepth else { throw .protocolViolation("replies nested more than \(limits.maxDepth) deep") }
        var values: [RESPValue] = []
        // Every element takes at least 3 bytes: never reserve more than the bytes could hold.
        values.reserveCapacity(min(count, buffer.readableBytes / 3))
        for _ in 0..<count {
            guard let value = try parse(&buffer, depth: depth + 1) else { return nil }
            values.append(value)
        }
        return values
    }

    /// The bytes up to the next CRLF (which is consumed); `nil` when no CRLF has come yet.
    private func readLine(_ buffer: inout ByteBuffer) throws(RedisError) -> ByteBuffer? {
        let view = buffer.readableBytesView
        let searched = view.prefix(limits.maxLineLength)
        guard let cr = searched.firstIndex(of: 0x0D) else {
            if view.count >= limits.maxLineLength { throw .protocolViolation("a line longer than \(limits.maxLineLength) bytes") }
            return nil
        }
        let length = cr - view.startIndex
        guard buffer.readableBytes > length + 1 else { return nil }
        guard buffer.getInteger(at: buffer.readerIndex + length + 1, as: UInt8.self) == 0x0A else {
            throw .protocolViolation("a CR without LF")
        }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    /// A length or count line: -1 when null is allowed and sent; refuses other negatives and values
    /// above the limits.
    private func readLength(_ buffer: inout ByteBuffer, allowsNull: Bool, elementsPerItem: Int = 0) throws(RedisError) -> Int? {
        guard let line = try readLine(&buffer) else { return nil }
        let value = try Self.integer(line, what: "length")
        if value == -1 && allowsNull { return -1 }
        guard value >= 0 else { throw .protocolViolation("a negative length (\(value))") }
        if elementsPerItem == 0 {
            guard value <= Int64(limits.maxBulkLength) else {
                throw .protocolViolation("a string of \(value) bytes (limit \(limits.maxBulkLength))")
            }
        } else {
            guard value <= Int64(limits.maxElements / elementsPerItem) else {
                throw .protocolViolation("an aggregate of \(value) elements (limit \(limits.maxElements))")
            }
        }
        return Int(value)
    }

    private func readBlob(_ buffer: inout ByteBuffer, length: Int) throws(RedisError) -> ByteBuffer? {
        guard buffer.readableBytes >= length + 2 else { return nil }
        let blob = buffer.readSlice(length: length)!
        guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw .protocolViolation("a string not followed by CRLF") }
        return blob
    }

    /// A decimal integer line, with overflow and stray bytes refused.
    static func integer(_ line: ByteBuffer, what: String) throws(RedisError) -> Int64 {
        let view = line.readableBytesView
        var index = view.startIndex
        var negative = false
        if index < view.endIndex, view[index] == UInt8(ascii: "-") || view[index] == UInt8(ascii: "+") {
            negative = view[index] == UInt8(ascii: "-")
            index += 1
        }
        guard index < view.endIndex else { throw .protocolViolation("an empty \(what)") }
        var magnitude: UInt64 = 0
        while index < view.endIndex {
            let byte = view[index]
            guard byte >= 0x30 && byte <= 0x39 else { throw .protocolViolation("a \(what) that is not a decimal number") }
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !overflow1, !overflow2, sum <= UInt64(Int64.max) + (negative ? 1 : 0) else {
                throw .protocolViolation("a \(what) out of range")
            }
            magnitude = sum
            index += 1
        }
        return negative ? (magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)) : Int64(magnitude)
    }
}
