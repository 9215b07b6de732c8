import Logging
import NIOCore

/// A Redis client: one pipelined connection for ordinary commands and, from the first blocking command
/// on, a second one for blocking commands (`XREAD BLOCK`, `BLPOP`), so that a blocked read never holds
/// up the others. Both reconnect by themselves with capped exponential backoff; while a connection is
/// down its commands fail at once with `RedisError.notConnected` (nothing is queued behind an outage).
///
/// Replies complete on `eventLoop`. TLS is not supported (see docs/REDIS.md).
public final class RedisClient: Sendable {
    /// The settings the client was made with.
    public let configuration: RedisConfiguration
    /// The loop both connections run on, and where every reply completes.
    public let eventLoop: EventLoop
    private let main: RedisLink
    private let blocking: RedisLink

    /// Starts connecting to `configuration`'s server on `eventLoop` (in the background: use
    /// `waitUntilConnected` to wait for the first connection).
    public init(configuration: RedisConfiguration, eventLoop: EventLoop, logger: Logger = Logger(label: "tailgate.redis")) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        main = RedisLink(configuration: configuration, eventLoop: eventLoop, logger: logger, role: "commands")
        blocking = RedisLink(configuration: configuration, eventLoop: eventLoop, logger: logger, role: "blocking")
        main.start()
    }

    /// Whether the command connection is up now.
    public var isConnected: Bool { main.connection != nil }

    /// Why the command connection is down (Redis's own text when it refused `AUTH`); `nil` while up.
    public var lastError: String? { main.lastError }

    /// Succeeds once the command connection is up; fails with the reason after `timeout`.
    public func waitUntilConnected(within timeout: TimeAmount) -> EventLoopFuture<Void> {
        main.waitUntilConnected(within: timeout)
    }

    /// Sends one command; its reply, `RedisError.server` with Redis's text for an error reply, or
    /// `RedisError.notConnected` at once while disconnected.
    public func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        main.send(command)
    }

    /// Sends `commands` as one pipeline (one write); their replies, in order.
    public func send(_ commands: [RedisCommand]) -> [EventLoopFuture<RESPValue>] {
        main.send(commands)
    }

    /// Sends a blocking command on the dedicated blocking connection. Give the command a `timeout`
    /// longer than its blocking time. The first call opens that connection (waiting for it up to the
    /// connect timeout); later calls fail at once while it is down.
    public func sendBlocking(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        blocking.sendStartingIfNeeded(command)
    }

    /// Closes both connections; commands in flight fail with `RedisError.connectionClosed`, later ones
    /// with `RedisError.clientClosed`.
    public func close() -> EventLoopFuture<Void> {
        main.close().and(blocking.close()).map { _ in () }
    }
}
