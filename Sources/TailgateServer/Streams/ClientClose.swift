import NIOCore
import NIOWebSocket

/// A client's close frame, checked against RFC 6455 §5.5.1 and §7.4: the answer is an echo of its
/// code, or a protocol error for a frame no endpoint may send.
enum ClientClose: Equatable {
    /// A valid close: echo this code.
    case echo(WebSocketErrorCode)
    /// A close frame that breaks the rules: answer with this code and reason, then close.
    case refuse(WebSocketErrorCode, String)

    static func check(_ frame: WebSocketFrame) -> ClientClose {
        guard frame.fin, frame.length <= 125 else { return .refuse(.protocolError, "invalid close frame") }
        var payload = frame.unmaskedData
        guard payload.readableBytes != 1 else { return .refuse(.protocolError, "a close payload of 1 byte") }
        guard let code = payload.readInteger(as: UInt16.self) else { return .echo(.normalClosure) }
        guard mayBeSent(code) else { return .refuse(.protocolError, "close code \(code) may not be sent") }
        guard String(validating: payload.readableBytesView, as: UTF8.self) != nil else {
            return .refuse(.dataInconsistentWithMessage, "the close reason is not UTF-8")
        }
        return .echo(WebSocketErrorCode(codeNumber: Int(code)))
    }

    /// Codes an endpoint may put on the wire: the defined ones (1000–1003, 1007–1011), those IANA
    /// registered since (1012–1014), and the ranges for libraries and applications (3000–4999).
    /// 1004–1006 and 1015 are reserved and never sent; the rest of 0–2999 is undefined.
    static func mayBeSent(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}
