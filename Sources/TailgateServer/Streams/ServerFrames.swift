import NIOCore
import NIOWebSocket

/// Builds the WebSocket frames the server sends (RFC 6455 §5.2: unmasked, FIN set).
///
/// The gateway frames its messages itself so that one framed buffer can be written unchanged to every
/// subscriber.
enum ServerFrames {
    enum Opcode: UInt8 {
        case text = 0x1
        case close = 0x8
        case ping = 0x9
        case pong = 0xA
    }

    /// The size of the header for a payload of `length` bytes.
    static func headerSize(payloadLength length: Int) -> Int {
        length < 126 ? 2 : (length <= 0xFFFF ? 4 : 10)
    }

    /// Writes a frame header.
    static func writeHeader(_ opcode: Opcode, payloadLength length: Int, compressed: Bool = false, into buffer: inout ByteBuffer) {
        buffer.writeInteger(0x80 | (compressed ? 0x40 : 0) | opcode.rawValue)
        if length < 126 {
            buffer.writeInteger(UInt8(length))
        } else if length <= 0xFFFF {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }

    /// A complete frame: header and a copy of `payload`.
    static func frame(_ opcode: Opcode, payload: ByteBuffer, compressed: Bool = false) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: payload.readableBytes + headerSize(payloadLength: payload.readableBytes))
        writeHeader(opcode, payloadLength: payload.readableBytes, compressed: compressed, into: &buffer)
        buffer.writeImmutableBuffer(payload)
        return buffer
    }

    /// A close frame with a status code and a reason (cut to fit the 125-byte control frame limit).
    static func close(code: WebSocketErrorCode, reason: String) -> ByteBuffer {
        var payload = ByteBufferAllocator().buffer(capacity: 125)
        payload.writeInteger(UInt16(webSocketErrorCode: code))
        var reasonBytes = Array(reason.utf8.prefix(123))
        while String(validating: reasonBytes, as: UTF8.self) == nil { reasonBytes.removeLast() }
        payload.writeBytes(reasonBytes)
        return frame(.close, payload: payload)
    }
}

extension WebSocketErrorCode {
    /// 1013 Try Again Later (IANA WebSocket close code registry): a stalled subscriber or an unanswered ping.
    static let tryAgainLater = WebSocketErrorCode(codeNumber: 1013)
}
