import NIOCore
import TailgateCore

/// Everything the gateway can be told. The command line maps its flags onto this and nothing else does.
public struct ServerConfiguration: Sendable {
    /// Address to listen on. Default `127.0.0.1`.
    public var host = "127.0.0.1"
    /// Port to listen on (0 picks a free one). Default 8080.
    public var port = 8080
    /// Folder of the browser UI. Default `Public` in the working directory.
    public var publicDirectory = "Public"
    /// Records replayed to a new subscriber that gives neither `since` nor `tail`. Default 1000.
    public var defaultTail = 1000
    /// Open connections, all kinds together. Default 10,000.
    public var maxConnections = 10_000
    /// Subscribers of one worker. Default 1000.
    public var maxSubscribersPerWorker = 1000
    /// Worker subscriptions on one `/ws/streams` or `/api/streams/events` connection. Default 1000.
    public var maxStreamSubscriptions = 1000
    /// Open connections from one client address. Default 256.
    public var maxConnectionsPerIP = 256
    /// Origins allowed besides the request's own host (exact `scheme://host[:port]`, or `*`).
    public var allowedOrigins: [String] = []
    /// Host names requests may give besides IP literals, `localhost` and `host` (against DNS
    /// rebinding; `*` allows any). Requests relayed by a trusted proxy are not checked. Default none.
    public var allowedHosts: [String] = []
    /// A subscriber whose connection takes no data for this long is closed with 1013. Default 60 s.
    public var stallTimeout: TimeAmount = .seconds(60)
    /// A stream with no inbound traffic for this long is pinged. Default 30 s.
    public var pingInterval: TimeAmount = .seconds(30)
    /// A ping unanswered for this long closes the stream with 1013. Default 30 s.
    public var pongTimeout: TimeAmount = .seconds(30)
    /// Time allowed to send a complete request head. Default 10 s.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// An HTTP connection idle this long between requests is closed. Default 60 s.
    public var keepAliveTimeout: TimeAmount = .seconds(60)
    /// Time allowed for the rest of a request once its head has come (its body), except a published
    /// body (`publisherIdleTimeout`). Then 408. Default 30 s.
    public var requestBodyTimeout: TimeAmount = .seconds(30)
    /// A published body (`POST …/records`) may stay open for hours, but a publisher that sends no byte for
    /// this long is answered 408 and disconnected; what it published is kept. Default 10 min.
    public var publisherIdleTimeout: TimeAmount = .seconds(600)
    /// The largest request head (request line and headers). Default 16 KiB.
    public var maxHeaderBytes = 16 * 1024
    /// The largest inbound WebSocket message. Default 4 KiB (the protocol's limit).
    public var maxInboundMessageBytes = 4 * 1024
    /// Outbound bytes buffered per stream above which it stops being written to. Default 256 KiB.
    public var writeBufferHighWatermark = 256 * 1024
    /// Outbound bytes below which a paused stream resumes. Default 64 KiB.
    public var writeBufferLowWatermark = 64 * 1024
    /// Whether a settled stream writes its live batches straight to its socket when NIO holds nothing
    /// of it (`StreamWriter`). Default on; off, every write takes NIO's channel path.
    public var directWrites = true
    /// Whether permessage-deflate is offered to clients that ask for it. Default on.
    public var deflateEnabled = true
    /// zlib compression level, 1 (fastest) to 9 (smallest). Default 6.
    public var deflateLevel = 6
    /// Messages smaller than this many bytes are sent uncompressed. Default 256.
    public var deflateThreshold = 256
    /// Who may publish over HTTP (`POST /api/workers/{id}/records`). Default loopback only.
    public var publishFrom: [AddressRange] = AddressRange.loopback
    /// The longest record line accepted from another process. Default 64 KiB.
    public var maxRecordBytes = 64 * 1024
    /// Proxies whose `X-Forwarded-For/-Proto/-Host` headers are believed. Default none.
    public var trustedProxies: [AddressRange] = []
    /// The path prefix the gateway is published under (e.g. `/tailgate`), for the URLs it hands out;
    /// requests may arrive with or without it. Default none.
    public var basePath = ""
    /// Tokens required for streams, the API and remote publishing. Default: auth off.
    public var access = AccessPolicy.open
    /// Seconds a client is told to wait in `Retry-After` when a limit is reached. Default 5.
    public var retryAfterSeconds = 5
    /// Who may read `GET /metrics` without a token (behind a trusted proxy, the forwarded client); with
    /// auth on, a token of `metrics` scope is accepted from anywhere. Default loopback only.
    public var metricsFrom: [AddressRange] = AddressRange.loopback
    /// Whether `/metrics` has per-worker series (labelled `worker`): three per worker held, so at most
    /// 3 × `BusConfiguration.maxWorkers` more series. Default off.
    public var metricsPerWorker = false

    /// The version of the program serving, reported as `version` by `GET /api/stats` when set.
    /// Default none.
    public var version: String?

    public init() {}

    /// Throws every setting that cannot be used, named by its property (`port`, `deflateLevel`, …).
    public func validate() throws(ConfigurationError) {
        var check = ConfigurationCheck()
        check.require(port, in: 0...65535, "port")
        check.require(!host.isEmpty, "host", "must not be empty")
        check.require(defaultTail, in: 0...1_000_000_000, "defaultTail")
        check.require(maxConnections, atLeast: 1, "maxConnections")
        check.require(maxSubscribersPerWorker, atLeast: 1, "maxSubscribersPerWorker")
        check.require(maxConnectionsPerIP, atLeast: 1, "maxConnectionsPerIP")
        check.require(maxStreamSubscriptions, atLeast: 1, "maxStreamSubscriptions")
        for (setting, value) in [("stallTimeout", stallTimeout), ("pingInterval", pingInterval), ("pongTimeout", pongTimeout),
                                 ("handshakeTimeout", handshakeTimeout), ("keepAliveTimeout", keepAliveTimeout),
                                 ("requestBodyTimeout", requestBodyTimeout), ("publisherIdleTimeout", publisherIdleTimeout)] {
            check.require(value > .zero, setting, "must be longer than 0")
        }
        check.require(maxHeaderBytes, in: 1024...(1 << 20), "maxHeaderBytes")
        check.require(maxInboundMessageBytes, in: 125...(1 << 24), "maxInboundMessageBytes")
        check.require(writeBufferLowWatermark, atLeast: 1, "writeBufferLowWatermark")
        check.require(writeBufferLowWatermark < writeBufferHighWatermark, "writeBufferLowWatermark", "must be below writeBufferHighWatermark")
        check.require(deflateLevel, in: 1...9, "deflateLevel")
        check.require(deflateThreshold, atLeast: 0, "deflateThreshold")
        check.require(basePath.isEmpty || (basePath.hasPrefix("/") && !basePath.hasSuffix("/") && !basePath.contains("?") && !basePath.contains("%")),
                      "basePath", "must start with '/' and not end with one (e.g. /tailgate), without '?' or '%'")
        check.require(maxRecordBytes, in: 64...(64 << 20), "maxRecordBytes")
        check.require(retryAfterSeconds, in: 0...86_400, "retryAfterSeconds")
        check.require(!publicDirectory.isEmpty, "publicDirectory", "must not be empty")
        try check.throwIfAny()
    }
}
