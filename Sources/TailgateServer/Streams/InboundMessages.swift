import NIOCore
import NIOWebSocket

/// Reassembles the data messages a client sends on a stream, enforcing the size cap and inflating
/// compressed ones. On `/ws/workers/{id}` clients need send nothing and what they send is checked and
/// then ignored; with `keepsMessages` (`/ws/streams`) the last complete message is kept for the session.
struct InboundMessages {
    private let maxBytes: Int
    private let inflater: Inflater?
    private var fragments: ByteBuffer?
    private var compressed = false
    private var isText = false
    private let keepsMessages: Bool
    private var completed: (message: ByteBuffer, isText: Bool)?

    /// What to do after a frame.
    enum Outcome: Equatable {
        /// Nothing (a fragment, or a complete message that was accepted).
        case accepted
        /// Close the stream with this code and reason.
        case close(WebSocketErrorCode, String)
    }

    init(maxBytes: Int, deflate: PerMessageDeflateParameters?, keepsMessages: Bool = false) {
        self.maxBytes = maxBytes
        self.keepsMessages = keepsMessages
        inflater = deflate.map { Inflater(keepsContext: !$0.clientNoContextTakeover) }
    }

    private var tooBig: Outcome { .close(.messageTooLarge, "inbound messages are limited to \(maxBytes) bytes") }

    mutating func receive(_ frame: WebSocketFrame) -> Outcome {
        if frame.rsv2 || frame.rsv3 || (frame.rsv1 && (inflater == nil || frame.opcode == .continuation)) {
            return .close(.protocolError, "reserved bits set without a negotiated extension")
        }
        switch frame.opcode {
        case .text, .binary:
            guard fragments == nil else { return .close(.protocolError, "new message before the previous one ended") }
            compressed = frame.rsv1
            isText = frame.opcode == .text
            fragments = ByteBuffer()
        case .continuation:
            guard fragments != nil else { return .close(.protocolError, "continuation frame without a message") }
        default:
            return .close(.protocolError, "unexpected opcode")
        }
        var data = frame.unmaskedData
        guard fragments!.readableBytes + data.readableBytes <= maxBytes else { return tooBig }
        fragments!.writeBuffer(&data)
        guard frame.fin else { return .accepted }
        var message = fragments!
        fragments = nil
        if compressed, let inflater {
            do {
                message = try inflater.inflate(message, limit: maxBytes)
            } catch .tooBig {
                return tooBig
            } catch {
                return .close(.dataInconsistentWithMessage, "invalid compressed data")
            }
        }
        if isText, String(validating: message.readableBytesView, as: UTF8.self) == nil {
            return .close(.dataInconsistentWithMessage, "text messages must be valid UTF-8")
        }
        if keepsMessages { completed = (message, isText) }
        return .accepted
    }

    /// The message the last frame completed, once (with `keepsMessages`).
    mutating func takeMessage() -> (message: ByteBuffer, isText: Bool)? {
        defer { completed = nil }
        return completed
    }

    /// Whether the last complete message was compressed (for statistics).
    var lastWasCompressed: Bool { compressed }
}
