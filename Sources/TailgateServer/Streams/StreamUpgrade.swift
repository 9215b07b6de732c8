import Crypto
import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// Turns an HTTP connection whose stream request was accepted into a stream: answers
/// `101 Switching Protocols` and replaces the HTTP handlers with a frame decoder and a `StreamSession`.
///
/// On this path (requests read by NIO's HTTP handlers) the handshake's `Sec-WebSocket-Accept` is
/// SwiftNIO's (`NIOWebSocketServerUpgrader`); a worker's stream request read by
/// `StreamHandshakeHandler` gets the same answer from `switchingProtocols(key:extraHeaders:)`. The
/// pipeline after it is ours: no frame encoder, because sessions write frames they built once for every
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
        let session = Self.session(for: acceptance, gateway: gateway, loop: httpContext.eventLoop, client: client)
        try switchToWebSocket(responseHeaders: responseHeaders, version: version, httpContext: httpContext,
                              maxFrameSize: gateway.configuration.maxInboundMessageBytes, session: session, statistics: gateway.statistics)
    }

    /// The session of an accepted stream request, for a connection on `loop`.
    static func session(for acceptance: StreamAcceptance, gateway: GatewayContext, loop: EventLoop, client: String) -> StreamSession {
        let configuration = gateway.configuration
        let request = acceptance.request
        let rendering: BatchRendering
        if let deflate = acceptance.deflate {
            rendering = DeflateFrameRendering(windowBits: deflate.serverMaxWindowBits, threshold: configuration.deflateThreshold,
                                              pool: gateway.deflaters, statistics: gateway.statistics)
        } else {
            rendering = PlainFrameRendering()
        }
        return StreamSession(
            source: request.source, start: request.start, resumed: request.resumed, rendering: rendering, tokenExpiry: request.token?.expiresAt,
            inbound: InboundMessages(maxBytes: configuration.maxInboundMessageBytes, deflate: acceptance.deflate),
            configuration: configuration, registry: gateway.registry(for: loop),
            statistics: gateway.statistics, log: gateway.log, client: client)
    }

    /// The key of a handshake NIO's upgrader completes: exactly one `Sec-WebSocket-Key` and one
    /// `Sec-WebSocket-Version` field (their values were checked by `StreamEndpoint.checkHandshake`);
    /// `nil` otherwise (the HTTP handlers then answer `handshakeFailed`).
    /// (One field each is enough: `checkHandshake` found the first key a nonce and the first version
    /// `13`, neither of which NIO splits; other cases go to NIO's upgrader.)
    static func handshakeKey(_ headers: HTTPHeaders) -> String? {
        guard headers.count(of: "sec-websocket-key") == 1, headers.count(of: "sec-websocket-version") == 1 else { return nil }
        return headers.first(name: "sec-websocket-key")
    }

    private static let websocketGUID = Array("258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)
    private static let base64Digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// The `101 Switching Protocols` head for the handshake of `key`, byte for byte what NIO's upgrader
    /// and response encoder write: `Upgrade`, `Sec-WebSocket-Accept` (RFC 6455 §4.2.2: base64 of the
    /// SHA-1 of the key and the GUID), `Connection`, then `extraHeaders`.
    static func switchingProtocols(key: String, extraHeaders: HTTPHeaders, allocator: ByteBufferAllocator) -> ByteBuffer {
        var hasher = Insecure.SHA1()
        var key = key
        key.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        websocketGUID.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        let digest = hasher.finalize()
        // Room for the hello frame the session adds (`StreamSession.switchingProtocols`).
        var head = allocator.buffer(capacity: 512)
        head.writeStaticString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ")
        digest.withUnsafeBytes { bytes in
            var index = 0
            while index < bytes.count {
                let remaining = bytes.count - index
                let b0 = bytes[index], b1 = remaining > 1 ? bytes[index + 1] : 0, b2 = remaining > 2 ? bytes[index + 2] : 0
                head.writeInteger(base64Digits[Int(b0 >> 2)])
                head.writeInteger(base64Digits[Int((b0 & 0x03) << 4 | b1 >> 4)])
                head.writeInteger(remaining > 1 ? base64Digits[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
                head.writeInteger(remaining > 2 ? base64Digits[Int(b2 & 0x3F)] : UInt8(ascii: "="))
                index += 3
            }
        }
        head.writeStaticString("\r\nConnection: upgrade\r\n")
        for (name, value) in extraHeaders {
            head.writeString(name)
            head.writeStaticString(": ")
            head.writeString(value)
            head.writeStaticString("\r\n")
        }
        head.writeStaticString("\r\n")
        return head
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

    static func countOpened(_ channel: Channel, statistics: GatewayStatistics) {
        statistics.streamsOpened.add(1, ordering: .relaxed)
        statistics.streamsOpen.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in statistics.streamsOpen.subtract(1, ordering: .relaxed) }
    }
}
