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

    var validator: StreamRequestValidator { StreamRequestValidator(configuration: configuration, bus: bus) }

    init(configuration: ServerConfiguration, bus: LogBus, statistics: GatewayStatistics, staticFiles: StaticFiles?,
         registries: [SessionRegistry], listeningHost: String) {
        self.configuration = configuration
        self.bus = bus
        self.statistics = statistics
        self.staticFiles = staticFiles
        self.limiter = ConnectionLimiter(configuration: configuration)
        self.registries = registries
        self.deflaters = DeflaterPool(level: configuration.deflateLevel)
        self.listeningHost = listeningHost
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
    /// The stream being opened, between the upgrade's validation and the session's start.
    var stream: StreamRequest?
    /// The permessage-deflate parameters agreed in the handshake, if any.
    var deflate: PerMessageDeflateParameters?
    /// The worker whose subscriber place this connection holds.
    var reservedWorker: Worker?

    init(address: String, admission: ConnectionLimiter.Admission) {
        self.address = address
        self.admission = admission
    }
}

/// `GET /api/stats`.
enum StatisticsJSON {
    static func render(_ gateway: GatewayContext) -> ByteBuffer {
        let statistics = gateway.statistics
        let values: [(String, Int)] = [
            ("connections_open", gateway.limiter.openConnections),
            ("connections_accepted", statistics.connectionsAccepted.load(ordering: .relaxed)),
            ("streams_opened", statistics.streamsOpened.load(ordering: .relaxed)),
            ("gaps_sent", statistics.gaps.load(ordering: .relaxed)),
            ("partial_frames", statistics.partialFrames.load(ordering: .relaxed)),
            ("max_buffered_bytes_per_stream", statistics.maxBufferedBytesPerStream.load(ordering: .relaxed)),
            ("stalled_closes", statistics.stalledCloses.load(ordering: .relaxed)),
            ("too_big_closes", statistics.tooBigCloses.load(ordering: .relaxed)),
            ("refusals", statistics.refusals.load(ordering: .relaxed)),
            ("deflate_compressions", statistics.compressions.load(ordering: .relaxed)),
            ("deflate_raw_bytes", statistics.compressedInputBytes.load(ordering: .relaxed)),
            ("deflate_compressed_bytes", statistics.compressedOutputBytes.load(ordering: .relaxed)),
            ("inflated_messages", statistics.inflatedMessages.load(ordering: .relaxed)),
            ("workers", gateway.bus.allWorkers().count),
        ]
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        buffer.writeStaticString("{")
        for (index, (name, value)) in values.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            buffer.writeJSONString(name)
            buffer.writeStaticString(":")
            buffer.writeJSONInteger(value)
        }
        buffer.writeStaticString("}\n")
        return buffer
    }
}
