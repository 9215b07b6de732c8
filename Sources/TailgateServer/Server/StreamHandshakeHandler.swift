import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// The first handler of every connection: answers the WebSocket handshake of a worker's stream
/// itself, and hands every other request to the HTTP handlers.
///
/// A head that `StreamRequestHead` reads (a plain `GET /ws/workers/…`) is decided by the `Router`, as
/// on the HTTP path: every check and limit. Accepted, it is answered here with `101` and the stream
/// (`StreamUpgrade.session(for:…)`), with no HTTP handler ever in the pipeline — the cheap path a
/// connect storm takes. Anything else — another request, a head it does not read, a refusal — goes to
/// the HTTP handlers (`ConnectionPipeline.addHTTPHandlers`), inserted behind it with the bytes read
/// so far and, for a request decided here, that decision, so their checks, refusals and answers are
/// the ones a client gets, unchanged. Bytes after the head (a first frame) go to the frame decoder.
///
/// It keeps the head's deadline (`handshakeTimeout`); the HTTP handlers take over what is left of it.
final class StreamHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let gateway: GatewayContext
    private let connection: ConnectionState
    /// The bytes received so far.
    private var received: ByteBuffer?
    private var deadline = NIODeadline.distantFuture
    private var timeout: Scheduled<Void>?

    init(gateway: GatewayContext, connection: ConnectionState) {
        self.gateway = gateway
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.eventLoop.now + gateway.configuration.handshakeTimeout
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(deadline: deadline) {
            // No whole head in time: closed silently, as by the HTTP handlers.
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        let before = received?.readableBytes ?? 0
        if received == nil {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        switch gateway.streamRequestHead.parse(received!, after: before) {
        case .incomplete:
            return
        case .other:
            handOver(decision: nil, context: context)
        case .head(let head, let length):
            let decision = Router(gateway: gateway).decide(head, connection: connection)
            guard case .upgrade(let acceptance) = decision, let key = StreamUpgrade.handshakeKey(head.headers) else {
                handOver(decision: decision, context: context)
                return
            }
            received!.moveReaderIndex(forwardBy: length)
            startStream(acceptance, key: key, context: context)
        }
    }

    /// Puts the HTTP handlers behind this one, leaves, and gives them the bytes received.
    private func handOver(decision: RouteDecision?, context: ChannelHandlerContext) {
        let channel = context.channel
        let bytes = received.take()
        do {
            try ConnectionPipeline.addHTTPHandlers(to: channel, gateway: gateway, connection: connection,
                                                   decision: decision, headDeadline: deadline)
        } catch {
            context.close(promise: nil)
            return
        }
        let pipeline = channel.pipeline.syncOperations
        pipeline.removeHandler(context: context, promise: nil)
        if let bytes { pipeline.fireChannelRead(NIOAny(bytes)) }
    }

    /// Answers `101` (through the session, with its hello), and replaces this handler with a frame
    /// decoder and the stream's session.
    private func startStream(_ acceptance: StreamAcceptance, key: String, context: ChannelHandlerContext) {
        let channel = context.channel
        let rest = received.take()
        let session = StreamUpgrade.session(for: acceptance, gateway: gateway, loop: context.eventLoop,
                                            client: acceptance.request.client.address)
        // Written by the session with its hello, in one buffer.
        session.switchingProtocols = StreamUpgrade.switchingProtocols(key: key, extraHeaders: acceptance.responseHeaders,
                                                                      allocator: channel.allocator)
        let pipeline = channel.pipeline.syncOperations
        // Counted before the session's hello leaves: a client that has it may look at /api/stats at once.
        StreamUpgrade.countOpened(channel, statistics: gateway.statistics)
        gateway.statistics.streamsOpenedDirectly.add(1, ordering: .relaxed)
        do {
            try pipeline.addHandlers([
                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: gateway.configuration.maxInboundMessageBytes)),
                session,
            ])
        } catch {
            context.close(promise: nil)
            return
        }
        pipeline.removeHandler(context: context, promise: nil)
        if let rest, rest.readableBytes > 0 { pipeline.fireChannelRead(NIOAny(rest)) }
    }
}

extension Optional {
    /// The value, leaving `nil`.
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
