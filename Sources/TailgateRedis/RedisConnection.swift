import NIOCore
import NIOPosix

/// One TCP connection to Redis (one NIO channel): commands are written as they come and many can be in
/// flight; each reply completes its command's future, in order. Does not reconnect (`RedisClient` does).
public final class RedisConnection: Sendable {
    /// The channel; its event loop completes every reply.
    public let channel: Channel

    private init(channel: Channel) {
        self.channel = channel
    }

    /// The loop the connection runs on.
    public var eventLoop: EventLoop { channel.eventLoop }

    /// Completes when the connection has closed.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Connects to `configuration`'s server on `eventLoop`, then sends `AUTH` (when a password is set)
    /// and `SELECT` (when the database is not 0). Fails with the connect error, or with Redis's own
    /// reply to `AUTH`/`SELECT` (`WRONGPASS …`), after closing the channel.
    public static func connect(to configuration: RedisConfiguration, on eventLoop: EventLoop) -> EventLoopFuture<RedisConnection> {
        let limits = configuration.decoderLimits
        let timeout = configuration.commandTimeout
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder(limits: limits)))
                    try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(commandTimeout: timeout))
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .flatMap { channel in
                let connection = RedisConnection(channel: channel)
                return connection.handshake(configuration).map { connection }.flatMapError { error in
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    private func handshake(_ configuration: RedisConfiguration) -> EventLoopFuture<Void> {
        var commands: [RedisCommand] = []
        if let password = configuration.password {
            var auth = RedisCommand("AUTH")
            if let user = configuration.user { auth.append(user) }
            auth.append(password)
            commands.append(auth)
        }
        if configuration.database != 0 {
            commands.append(RedisCommand("SELECT", [.integer(Int64(configuration.database))]))
        }
        guard !commands.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        return EventLoopFuture.andAllSucceed(send(commands), on: eventLoop)
    }

    /// Sends one command; the future has its reply, or fails with `RedisError`.
    public func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        let promise = eventLoop.makePromise(of: RESPValue.self)
        channel.writeAndFlush(RedisRequest(command: command, promise: promise), promise: nil)
        return promise.futureResult
    }

    /// Sends `commands` in one write (a pipeline); the futures are their replies, in the same order.
    public func send(_ commands: [RedisCommand]) -> [EventLoopFuture<RESPValue>] {
        let requests = commands.map { RedisRequest(command: $0, promise: eventLoop.makePromise(of: RESPValue.self)) }
        let channel = channel
        if eventLoop.inEventLoop {
            Self.write(requests, to: channel)
        } else {
            eventLoop.execute { Self.write(requests, to: channel) }
        }
        return requests.map(\.promise.futureResult)
    }

    private static func write(_ requests: [RedisRequest], to channel: Channel) {
        for request in requests { channel.write(request, promise: nil) }
        channel.flush()
    }

    /// Closes the connection; commands in flight fail with `RedisError.connectionClosed`.
    public func close() -> EventLoopFuture<Void> {
        channel.close().flatMapError { _ in self.channel.eventLoop.makeSucceededVoidFuture() }
    }
}
