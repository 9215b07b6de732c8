import Logging
import NIOCore
import TailgateCore

/// What every connection handler of one gateway shares.
final class GatewayContext: Sendable {
    let configuration: ServerConfiguration
    let bus: LogBus
    let statistics: GatewayStatistics
    let staticFiles: StaticFiles?
    let limiter: ConnectionLimiter
    let registries: [SessionRegistry]
    /// Compressors for permessage-deflate streams.
    let deflaters: DeflaterPool
    /// `host:port` the gateway listens on, for URLs when a request has no `Host`.
    let listeningHost: String
    /// The names a request's `Host` may give.
    let hostPolicy: HostPolicy
    /// What `/metrics` serves.
    let metrics: GatewayMetrics
    /// Starting, ready or shutting down, for `/readyz`.
    let readiness: GatewayReadiness
    /// Where refusals, closes, ingest errors and worker changes are logged.
    let log: ServerLog
    /// Reads the heads of worker stream requests for `StreamHandshakeHandler`.
    let streamRequestHead: StreamRequestHead

    /// Queued records of a worker above which an HTTP publisher stops being read.
    var ingestQueueLimit: Int { max(64, min(8192, bus.configuration.workerLimits.ringRecords / 2)) }

    init(configuration: ServerConfiguration, bus: LogBus, statistics: GatewayStatistics, staticFiles: StaticFiles?,
         registries: [SessionRegistry], listeningHost: String, metrics: GatewayMetrics? = nil, readiness: GatewayReadiness = GatewayReadiness(),
         log: ServerLog = ServerLog(logger: Logger(label: "tailgate"))) {
        self.configuration = configuration
        self.bus = bus
        self.statistics = statistics
        self.staticFiles = staticFiles
        self.limiter = ConnectionLimiter(configuration: configuration)
        self.registries = registries
        self.deflaters = DeflaterPool(level: configuration.deflateLevel)
        self.listeningHost = listeningHost
        self.hostPolicy = HostPolicy(allowed: configuration.allowedHosts, listenHost: configuration.host)
        self.metrics = metrics ?? GatewayMetrics(perWorker: configuration.metricsPerWorker)
        self.readiness = readiness
        self.log = log
        self.streamRequestHead = StreamRequestHead(basePath: configuration.basePath, maxHeadBytes: configuration.maxHeaderBytes)
    }

    /// The session registry of `loop`.
    func registry(for loop: EventLoop) -> SessionRegistry {
        registries.first { $0.loop === loop }!
    }
}

/// What one connection knows about itself; only touched on its loop.
final class ConnectionState: @unchecked Sendable {
    /// The client's address (no port).
    let address: String
    /// Whether the connection may be served.
    let admission: ConnectionLimiter.Admission
    /// The worker whose subscriber place this connection holds.
    var reservedWorker: Worker?
    /// The client address (behind a trusted proxy) whose place this connection holds.
    var reservedClient: String?

    init(address: String, admission: ConnectionLimiter.Admission) {
        self.address = address
        self.admission = admission
    }
}
