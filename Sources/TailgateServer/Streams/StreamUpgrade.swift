import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// Turns an HTTP connection whose stream request was accepted into a stream: answers
/// `101 Switching Protocols` and replaces the HTTP handlers with a frame decoder and a `StreamSession`.
///
/// The handshake's `Sec-WebSocket-Accept` is SwiftNIO's (`NIOWebSocketServerUpgrader`); the pipeline
/// after it is ours: no frame encoder, because sessions write frames they built once for every
/// subscriber. Bytes the client sent after its request (a first frame) stay in the HTTP decoder, which
/// hands them to the frame decoder when it leaves the pipeline.
struct StreamUpgrade {
    /// The connection's HTTP handlers, removed by the upgrade.
    let encoder: HTTPResponseEncoder
    let decoder: ByteToMessageHandler<HTTPRequestDecoder>
    let pipelining: HTTPServerPipelineHandler

    /// Computes `Sec-WebSocket-Accept` (the checks were made by `StreamEndpoint`).
    static let handshake = NIOWebSocketServerUpgrader(
        automaticErrorHandling: false,
        shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
        upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() })

    /// The complete `101` headers for `acceptance`, or the failure of the handshake.
    static func responseHeaders(for acceptance: StreamAcceptance, head: HTTPRequestHead, channel: Channel) -> EventLoopFuture<HTTPHeaders> {
        handshake.buildUpgradeResponse(channel: channel, upgradeRequest: head, initialResponseHeaders: HTTPHeaders())
            .map { headers in
                var headers = headers
                headers.add(contentsOf: acceptance.responseHeaders)
                return headers
            }
    }

    /// Sends the `101` answer and swaps the pipeline. `httpContext` is the context of the handler that
    /// received the request, the last HTTP handler.
    func perform(_ acceptance: StreamAcceptance, responseHeaders: HTTPHeaders, version: HTTPVersion,
                 httpContext: ChannelHandlerContext, gateway: GatewayContext, client: String = "") throws {
        let configuration = gateway.configuration
        let request = acceptance.request
        let rendering: BatchRendering
        if let deflate = acceptance.deflate {
            rendering = DeflateFrameRendering(windowBits: deflate.serverMaxWindowBits, threshold: configuration.deflateThreshold,
                                              pool: gateway.deflaters, statistics: gateway.statistics)
        } else {
            rendering = PlainFrameRendering()
        }
        let channel = httpContext.channel
        let session = StreamSession(
            source: request.source, start: request.start, resumed: request.resumed, rendering: rendering, tokenExpiry: request.token?.expiresAt,
            inbound: InboundMessages(maxBytes: configuration.maxInboundMessageBytes, deflate: acceptance.deflate),
            configuration: configuration, registry: gateway.registry(for: channel.eventLoop),
            statistics: gateway.statistics, log: gateway.log, client: client)
        try switchToWebSocket(responseHeaders: responseHeaders, version: version, httpContext: httpContext,
                              maxFrameSize: configuration.maxInboundMessageBytes, session: session, statistics: gateway.statistics)
    }

    /// Sends the `101` answer and replaces the HTTP handlers with a frame decoder and `session`, which
    /// writes framed bytes itself (and flushes the `101` with its first message).
    func switchToWebSocket(responseHeaders: HTTPHeaders, version: HTTPVersion, httpContext: ChannelHandlerContext,
                           maxFrameSize: Int, session: ChannelHandler, statistics: GatewayStatistics) throws {
        let head = HTTPResponseHead(version: version, status: .switchingProtocols, headers: responseHeaders)
        // Not flushed: the session flushes it with its hello, one write for both.
        httpContext.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        let channel = httpContext.channel
        let pipeline = channel.pipeline.syncOperations
        // Outbound HTTP handlers first: the session's first write (hello) must pass none of them.
        pipeline.removeHandler(encoder, promise: nil)
        pipeline.removeHandler(pipelining, promise: nil)
        pipeline.removeHandler(context: httpContext, promise: nil)
        try pipeline.addHandlers([
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)),
            session,
        ])
        // The decoder leaves on the next loop turn, passing on what it holds to the frame decoder.
        pipeline.removeHandler(decoder, promise: nil)
        Self.countOpened(channel, statistics: statistics)
    }

    /// Replaces the HTTP handlers with `session`, which writes the response head and the events
    /// itself (no HTTP encoder: the body is not chunked and ends when the connection closes).
    func switchToEventStream(httpContext: ChannelHandlerContext, session: ChannelHandler, statistics: GatewayStatistics) throws {
        let channel = httpContext.channel
        let pipeline = channel.pipeline.syncOperations
        pipeline.removeHandler(encoder, promise: nil)
        pipeline.removeHandler(pipelining, promise: nil)
        pipeline.removeHandler(context: httpContext, promise: nil)
        try pipeline.addHandler(session)
        pipeline.removeHandler(decoder, promise: nil)
        Self.countOpened(channel, statistics: statistics)
    }

    private static func countOpened(_ channel: Channel, statistics: GatewayStatistics) {
        statistics.streamsOpened.add(1, ordering: .relaxed)
        statistics.streamsOpen.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in statistics.streamsOpen.subtract(1, ordering: .relaxed) }
    }
}
