import NIOCore
import NIOHTTP1

/// An HTTP answer of the gateway (or of a proxy before it), whole.
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
    /// Whether the connection stays open after it (HTTP/1.1 keep-alive, no `Connection: close`).
    var keepAlive: Bool

    var text: String { String(buffer: body) }

    func header(_ name: String) -> String? { headers.first(name: name) }
}

/// Assembles the response parts that NIO's `HTTPResponseDecoder` reads into whole `HTTPAnswer`s, and
/// tells its owner (a `GatewayConnection`, on the same event loop) about answers, writability and the
/// end of the connection. An error closes the connection; the first error is the one reported.
///
/// A body is kept up to `maxBodyBytes` (the gateway's answers are small JSON objects; a proxy's error
/// page is cut).
final class HTTPAnswerCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    static let maxBodyBytes = 256 << 10

    /// Called with each whole answer.
    var onAnswer: ((HTTPAnswer) -> Void)?
    /// Called when the channel's writability changes.
    var onWritabilityChange: (() -> Void)?
    /// Called once when the connection has ended, with the error that ended it, if any.
    var onClose: ((Error?) -> Void)?

    /// Whether the connection has ended (it may have before the owner set `onClose`).
    private(set) var isClosed = false
    /// The first error seen on the connection.
    private(set) var firstError: Error?

    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            head = responseHead
            body.clear()
        case .body(var part):
            let room = Self.maxBodyBytes - body.readableBytes
            if room > 0 { body.writeImmutableBuffer(part.readSlice(length: min(room, part.readableBytes))!) }
        case .end:
            guard let responseHead = head else { return }
            head = nil
            let answer = HTTPAnswer(status: Int(responseHead.status.code), headers: responseHead.headers, body: body,
                                    keepAlive: responseHead.isKeepAlive)
            body = ByteBuffer()
            onAnswer?(answer)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        onWritabilityChange?()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if firstError == nil { firstError = error }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        onClose?(firstError)
        context.fireChannelInactive()
    }
}
