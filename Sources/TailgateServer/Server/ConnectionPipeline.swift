import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// Sets up a new connection: admission, HTTP handlers, and the WebSocket upgrade into a `StreamSession`.
enum ConnectionPipeline {
    static func configure(_ channel: Channel, gateway: GatewayContext) throws {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        // Behind a trusted proxy every client shares the proxy's address: those are counted per real
        // client (X-Forwarded-For) when they open a stream instead.
        let viaProxy = gateway.configuration.trustedProxies.contains { $0.contains(address) }
        let admission = gateway.limiter.admit(address, countPerAddress: !viaProxy)
        gateway.statistics.connectionsAccepted.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in gateway.limiter.release(address, countedPerAddress: !viaProxy) }
        if case .dropped = admission {
            channel.close(promise: nil)
            return
        }
        let connection = ConnectionState(address: address, admission: admission)
        channel.closeFuture.whenComplete { _ in
            if let worker = connection.reservedWorker { gateway.limiter.releaseSubscriber(of: worker) }
            if let client = connection.reservedClient { gateway.limiter.releaseProxiedClient(client) }
        }

        let httpHandler = HTTPRequestHandler(gateway: gateway, connection: connection)
        let upgrader = StreamUpgrader(
            handshake: NIOWebSocketServerUpgrader(
                maxFrameSize: gateway.configuration.maxInboundMessageBytes,
                automaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeSucceededFuture(shouldUpgrade(head, connection: connection, gateway: gateway))
                },
                upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() }
            ),
            start: { channel in try startStream(on: channel, connection: connection, gateway: gateway) }
        )
        let encoder = HTTPResponseEncoder()
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = gateway.configuration.maxHeaderBytes
        limits.maxHeaderFieldSize = gateway.configuration.maxHeaderBytes
        limits.maxHeaderFieldCount = 256
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits))
        let pipelining = HTTPServerPipelineHandler()
        let upgradeHandler = HTTPServerUpgradeHandler(
            upgraders: [upgrader], httpEncoder: encoder, extraHTTPHandlers: [decoder, pipelining, httpHandler],
            upgradeCompletionHandler: { _ in })
        try channel.pipeline.syncOperations.addHandlers([encoder, decoder, pipelining, upgradeHandler, httpHandler])
    }

    /// Validates an upgrade request. `nil` lets it through to `HTTPRequestHandler`, which answers the
    /// refusal kept in `connection.upgradeRefusal`.
    private static func shouldUpgrade(_ head: HTTPRequestHead, connection: ConnectionState, gateway: GatewayContext) -> HTTPHeaders? {
        let request: StreamRequest
        do throws(GatewayError) {
            if case .refused(let refusal) = connection.admission { throw refusal }
            request = try gateway.validator.validate(head, peer: connection.address)
            if request.client.viaTrustedProxy {
                if let refusal = gateway.limiter.reserveProxiedClient(request.client.address) { throw refusal }
                connection.reservedClient = request.client.address
            }
            if let refusal = gateway.limiter.reserveSubscriber(of: request.worker) { throw refusal }
        } catch {
            connection.upgradeRefusal = error
            return nil
        }
        connection.reservedWorker = request.worker
        connection.stream = request
        var headers = HTTPHeaders()
        if gateway.configuration.deflateEnabled,
           let parameters = PerMessageDeflateNegotiation.negotiate(head.headers["sec-websocket-extensions"])
        {
            connection.deflate = parameters
            headers.add(name: "Sec-WebSocket-Extensions", value: parameters.responseHeader)
        }
        return headers
    }

    private static func startStream(on channel: Channel, connection: ConnectionState, gateway: GatewayContext) throws {
        guard let request = connection.stream else { throw ChannelError.inappropriateOperationForState }
        connection.stream = nil
        let rendering: BatchRendering
        if let deflate = connection.deflate {
            rendering = DeflateFrameRendering(windowBits: deflate.serverMaxWindowBits, threshold: gateway.configuration.deflateThreshold,
                                              pool: gateway.deflaters, statistics: gateway.statistics)
        } else {
            rendering = PlainFrameRendering()
        }
        let session = StreamSession(
            worker: request.worker, start: request.start, rendering: rendering, tokenExpiry: request.token?.expiresAt,
            inbound: InboundMessages(maxBytes: gateway.configuration.maxInboundMessageBytes, deflate: connection.deflate),
            configuration: gateway.configuration, registry: gateway.registry(for: channel.eventLoop),
            statistics: gateway.statistics)
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: gateway.configuration.maxInboundMessageBytes)),
            session,
        ])
        gateway.statistics.streamsOpened.add(1, ordering: .relaxed)
        gateway.statistics.streamsOpen.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in gateway.statistics.streamsOpen.subtract(1, ordering: .relaxed) }
    }
}

/// The WebSocket upgrade of a stream request. The handshake (validation, `Sec-WebSocket-Accept`) is
/// SwiftNIO's; the pipeline after it is ours: a frame decoder and a `StreamSession`, and no frame
/// encoder, because sessions write frames they built once for every subscriber.
struct StreamUpgrader: HTTPServerProtocolUpgrader {
    let handshake: NIOWebSocketServerUpgrader
    let start: (Channel) throws -> Void

    var supportedProtocol: String { handshake.supportedProtocol }
    var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    func buildUpgradeResponse(channel: Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        handshake.buildUpgradeResponse(channel: channel, upgradeRequest: upgradeRequest, initialResponseHeaders: initialResponseHeaders)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture { try start(context.channel) }
    }
}
