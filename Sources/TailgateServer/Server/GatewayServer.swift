import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TailgateCore

/// The gateway: one listening socket serving the dashboard, the REST API and every worker's stream.
///
/// ```swift
/// let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
/// let bus = LogBus(eventLoopGroup: group)
/// let server = try await GatewayServer.start(configuration: .init(), bus: bus, group: group)
/// let worker = try bus.register(WorkerID("strategy-1")!)
/// worker.publish(.info, "started")
/// ```
public final class GatewayServer: Sendable {
    /// The settings it runs with.
    public let configuration: ServerConfiguration
    /// Its counters.
    public let statistics: GatewayStatistics
    /// The bus whose workers it serves.
    public let bus: LogBus
    /// The port it listens on (useful with port 0).
    public let port: Int
    private let channel: Channel
    private let context: GatewayContext
    private let logger: Logger
    private let loopDelay: EventLoopDelayProbe
    private let workerWatch: RepeatedTask

    private init(configuration: ServerConfiguration, statistics: GatewayStatistics, bus: LogBus, channel: Channel,
                 context: GatewayContext, logger: Logger, loopDelay: EventLoopDelayProbe, workerWatch: RepeatedTask) {
        self.configuration = configuration
        self.statistics = statistics
        self.bus = bus
        self.channel = channel
        self.port = channel.localAddress?.port ?? configuration.port
        self.context = context
        self.logger = logger
        self.loopDelay = loopDelay
        self.workerWatch = workerWatch
    }

    /// Its metrics, served by `GET /metrics`; `metrics.registry` takes the embedding program's own.
    public var metrics: GatewayMetrics { context.metrics }

    /// Binds and starts serving. Throws `ConfigurationError` when a setting cannot be used, or the
    /// error of binding the address. `logger` receives what the gateway logs (`ServerLog`): refusals
    /// and authentication failures, closed subscribers, rejected published lines, workers registered
    /// and stopped, accept back-off; all rate-limited or per request, never per record.
    public static func start(
        configuration: ServerConfiguration, bus: LogBus, group: EventLoopGroup,
        logger: Logger = Logger(label: "tailgate")
    ) async throws -> GatewayServer {
        try configuration.validate()
        let statistics = GatewayStatistics()
        let staticFiles = StaticFiles(directory: configuration.publicDirectory)
        if staticFiles == nil {
            logger.warning("public directory not found; the dashboard is not served", metadata: ["directory": "\(configuration.publicDirectory)"])
        }
        let metrics = GatewayMetrics(perWorker: configuration.metricsPerWorker)
        let loops = Array(group.makeIterator())
        let registries = loops.map { SessionRegistry(loop: $0, delivery: StreamDeliveryCounters(latency: metrics.publishToWrite)) }
        let listeningHost = configuration.host.contains(":") ? "[\(configuration.host)]:\(configuration.port)" : "\(configuration.host):\(configuration.port)"
        let context = GatewayContext(configuration: configuration, bus: bus, statistics: statistics, staticFiles: staticFiles,
                                     registries: registries, listeningHost: listeningHost, metrics: metrics,
                                     log: ServerLog(logger: logger))
        let acceptBackoff = AcceptBackoff(statistics: statistics, logger: logger)
        let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: configuration.writeBufferLowWatermark,
                                                                            high: configuration.writeBufferHighWatermark)
        // A connect storm pays for every option of every accepted connection: the bootstrap applies child
        // options one future at a time, so they are set here in the initializer, synchronously. Reads stay
        // at NIO's default of 4 per wake-up; accepts are taken up to 16 per wake-up.
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(acceptBackoff.makeHandler()) }
            }
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .serverChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let options = channel.syncOptions {
                        #if !os(Linux)
                        // Linux gives accepted sockets the listening socket's TCP_NODELAY; elsewhere it is set.
                        try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
                        #endif
                        try options.setOption(.writeBufferWaterMark, value: writeBufferWaterMark)
                    }
                    try ConnectionPipeline.configure(channel, gateway: context)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        let loopDelay = EventLoopDelayProbe(loops: loops, delay: metrics.eventLoopDelay)
        loopDelay.start()
        // Workers registered and stopped are logged from a look once a second, off the record paths.
        let log = context.log
        let workerWatch = channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { _ in
            log.lookAtWorkers(bus)
        }
        context.readiness.markReady()
        return GatewayServer(configuration: configuration, statistics: statistics, bus: bus, channel: channel,
                             context: context, logger: logger, loopDelay: loopDelay, workerWatch: workerWatch)
    }

    /// Whether `/readyz` says ready: started, not shutting down, and its store (if any) writing.
    public var isReady: Bool {
        GatewayReadiness.notReadyReason(phase: context.readiness.phase, store: bus.store?.health()) == nil
    }

    /// Open connections right now.
    public var openConnections: Int { context.limiter.openConnections }

    /// Stops accepting, closes every stream with 1001 ("server shutting down") and waits until the
    /// streams are closed (at most `timeout`). Plain HTTP connections close with the event loop group;
    /// from the start of the shutdown `/readyz` answers 503 on them.
    public func shutdown(timeout: TimeAmount = .seconds(3)) async {
        context.readiness.markShuttingDown()
        loopDelay.stop()
        workerWatch.cancel()
        context.log.lookAtWorkers(bus)
        try? await channel.close()
        var closes: [EventLoopFuture<Void>] = []
        for registry in context.registries {
            if let futures = try? await registry.loop.submit({ registry.closeAll(code: .goingAway, reason: "server shutting down") }).get() {
                closes += futures
            }
        }
        let loop = channel.eventLoop
        let done = loop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(closes, on: loop).cascade(to: done)
        let deadline = loop.scheduleTask(in: timeout) { done.succeed() }
        try? await done.futureResult.get()
        deadline.cancel()
    }
}
