import NIOCore
import NIOWebSocket

/// What a stream does with a frame from its client (RFC 6455 §5.1–§5.5): the checks every frame
/// passes, and the answers to control frames, shared by `/ws/workers/{id}` and `/ws/streams`.
enum ClientFrame {
    /// Close the stream with this code and reason.
    case violation(WebSocketErrorCode, String)
    /// A ping: write this pong.
    case ping(pong: ByteBuffer)
    /// A pong: the client answered.
    case pong
    /// A close frame: answer with this frame (`refused`: the client's close broke the rules, count it).
    case close(reply: ByteBuffer, refused: WebSocketErrorCode?)
    /// A data frame (text, binary, continuation) for `InboundMessages`.
    case data

    static func classify(_ frame: WebSocketFrame) -> ClientFrame {
        guard frame.maskKey != nil else { return .violation(.protocolError, "client frames must be masked") }
        if frame.rsv1 || frame.rsv2 || frame.rsv3, frame.opcode.isControlOpcode {
            return .violation(.protocolError, "reserved bits set on a control frame")
        }
        switch frame.opcode {
        case .ping:
            guard frame.fin, frame.length <= 125 else { return .violation(.protocolError, "invalid ping frame") }
            var payload = frame.unmaskedData
            return .ping(pong: ServerFrames.frame(.pong, payload: payload.readSlice(length: payload.readableBytes)!))
        case .pong:
            return .pong
        case .connectionClose:
            // Echo the client's code (RFC 6455 §5.5.1), or refuse a close frame no endpoint may send.
            switch ClientClose.check(frame) {
            case .echo(let code):
                return .close(reply: ServerFrames.close(code: code, reason: ""), refused: nil)
            case .refuse(let code, let reason):
                return .close(reply: ServerFrames.close(code: code, reason: reason), refused: code)
            }
        case .text, .binary, .continuation:
            return .data
        default:
            return .violation(.protocolError, "unknown opcode")
        }
    }
}
