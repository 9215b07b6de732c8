import NIOCore
import NIOHTTP1
import TailgateCore

/// Sets up a new connection: admission, then `StreamHandshakeHandler`, which answers a worker's stream
/// request itself and puts the HTTP handlers in its place for anything else. An accepted stream
/// request replaces those with a stream (`StreamUpgrade`).
enum ConnectionPipeline {
    static func configure(_ channel: Channel, gateway: GatewayContext) throws {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        // Behind a trusted proxy every client shares the proxy's address: those are counted per real
        // client (X-Forwarded-For) when they open a stream instead.
        let viaProxy = gateway.configuration.trustedProxies.contains { $0.contains(address) }
        let admission = gateway.limiter.admit(address, countPerAddress: !viaProxy)
        gateway.statistics.connectionsAccepted.add(1, ordering: .relaxed)
        let connection = ConnectionState(address: address, admission: admission)
        let limiter = gateway.limiter
        channel.closeFuture.whenComplete { _ in
            limiter.release(address, countedPerAddress: !viaProxy)
            if let worker = connection.reservedWorker { limiter.releaseSubscriber(of: worker) }
            if let client = connection.reservedClient { limiter.releaseProxiedClient(client) }
        }
        if case .dropped = admission {
            gateway.statistics.connectionsDropped.add(1, ordering: .relaxed)
            channel.close(promise: nil)
            return
        }
        try channel.pipeline.syncOperations.addHandler(StreamHandshakeHandler(gateway: gateway, connection: connection))
    }

    /// Appends the HTTP handlers. `decision`: what the router decided for the first request, which was
    /// read before (by `StreamHandshakeHandler`); `headDeadline`: when the first head must have come.
    static func addHTTPHandlers(to channel: Channel, gateway: GatewayContext, connection: ConnectionState,
                                decision: RouteDecision? = nil, headDeadline: NIODeadline? = nil) throws {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = gateway.configuration.maxHeaderBytes
        limits.maxHeaderFieldSize = gateway.configuration.maxHeaderBytes
        limits.maxHeaderFieldCount = StreamRequestHead.maxFields
        let upgrade = StreamUpgrade(
            encoder: HTTPResponseEncoder(),
            decoder: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits)),
            pipelining: HTTPServerPipelineHandler())
        let httpHandler = HTTPRequestHandler(gateway: gateway, connection: connection, upgrade: upgrade,
                                             firstDecision: decision, headDeadline: headDeadline)
        try channel.pipeline.syncOperations.addHandlers([upgrade.encoder, upgrade.decoder, upgrade.pipelining, httpHandler])
    }
}
