import ArgumentParser
import Dispatch
import Logging
import NIOCore
import NIOPosix
import TailgateCore
import TailgateDemo
import TailgateServer
#if canImport(Glibc)
import Glibc
#endif

/// `tailgate serve`: runs the gateway.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: dashboard, REST API and every worker's stream on one port.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port = 8080

    @Option(help: "Start N simulated strategy workers (demo-1 … demo-N).")
    var demo = 0

    @Option(name: .customLong("demo-rate"), help: "Records per second per demo worker (1 to 100000).")
    var demoRate: Double = 5

    @Option(name: .customLong("event-loops"), help: "Event loops (threads) serving connections.")
    var eventLoops = 1

    @Option(name: .customLong("ring-records"), help: "Records kept per worker for replay.")
    var ringRecords = 10_000

    @Option(name: .customLong("ring-bytes"), help: "Bytes of records kept per worker (e.g. 8MiB, 512KiB; default 8MiB).", transform: ByteSize.parse)
    var ringBytes = 8 << 20

    @Option(name: .customLong("retention"), help: "Seconds a stopped worker stays readable before it is removed.")
    var retention = 600

    @Option(name: .customLong("default-tail"), help: "Records replayed to a subscriber that gives neither since nor tail.")
    var defaultTail = 1000

    @Option(name: .customLong("max-connections"), help: "Open connections in all.")
    var maxConnections = 10_000

    @Option(name: .customLong("max-subscribers-per-worker"), help: "Subscribers of one worker.")
    var maxSubscribersPerWorker = 1000

    @Option(name: .customLong("max-connections-per-ip"), help: "Open connections from one client address.")
    var maxConnectionsPerIP = 256

    @Option(name: .customLong("allowed-origin"), help: "An Origin allowed besides the gateway's own (repeatable; * allows all).")
    var allowedOrigins: [String] = []

    @Option(name: .customLong("stall-timeout"), help: "Seconds a subscriber may take no data before it is closed with 1013.")
    var stallTimeout = 60

    @Option(name: .customLong("ping-interval"), help: "Seconds of client silence before the gateway pings.")
    var pingInterval = 30

    @Option(name: .customLong("publish-from"), help: "Addresses allowed to publish over HTTP, as CIDR (repeatable; replaces the default 127.0.0.0/8 and ::1).")
    var publishFrom: [String] = []

    @Option(name: .customLong("max-record-bytes"), help: "Longest record line accepted from another process (e.g. 64KiB).", transform: ByteSize.parse)
    var maxRecordBytes = 64 << 10

    @Option(name: .customLong("trusted-proxy"), help: "A proxy (CIDR) whose X-Forwarded-For/-Proto/-Host headers are believed (repeatable).")
    var trustedProxies: [String] = []

    @Option(name: .customLong("base-path"), help: "Path prefix the gateway is published under behind a proxy (e.g. /tailgate).")
    var basePath = ""

    @Option(name: .customLong("auth-secret-file"), help: "Require access tokens signed with the secret in this file (see `tailgate token`).")
    var authSecretFile: String?

    @Option(name: .customLong("public-dir"), help: "Folder of the browser UI.")
    var publicDir = "Public"

    @Flag(inversion: .prefixedNo, help: "Offer permessage-deflate compression to clients (RFC 7692).")
    var deflate = true

    @Option(name: .customLong("deflate-level"), help: "zlib level for compressed streams, 1 (fastest) to 9 (smallest).")
    var deflateLevel = 6

    @Option(name: .customLong("deflate-threshold"), help: "Messages smaller than this many bytes go uncompressed.")
    var deflateThreshold = 256

    func validate() throws {
        guard demo >= 0 else { throw ValidationError("--demo must be 0 or more") }
        guard demoRate >= 1 && demoRate <= 100_000 else { throw ValidationError("--demo-rate must be between 1 and 100000") }
        guard ringRecords >= 1 else { throw ValidationError("--ring-records must be at least 1") }
        guard ringBytes >= 64 << 10 else { throw ValidationError("--ring-bytes must be at least 64KiB") }
        guard retention >= 0 else { throw ValidationError("--retention must be 0 or more") }
        guard stallTimeout >= 1 else { throw ValidationError("--stall-timeout must be at least 1") }
        guard pingInterval >= 1 else { throw ValidationError("--ping-interval must be at least 1") }
    }

    func run() async throws {
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.eventLoops = eventLoops
        configuration.publicDirectory = publicDir
        configuration.defaultTail = defaultTail
        configuration.maxConnections = maxConnections
        configuration.maxSubscribersPerWorker = maxSubscribersPerWorker
        configuration.maxConnectionsPerIP = maxConnectionsPerIP
        configuration.allowedOrigins = allowedOrigins
        configuration.stallTimeout = .seconds(Int64(stallTimeout))
        configuration.pingInterval = .seconds(Int64(pingInterval))
        configuration.pongTimeout = .seconds(Int64(pingInterval))
        if !publishFrom.isEmpty {
            configuration.publishFrom = try publishFrom.map { text in
                guard let range = AddressRange(text) else { throw ValidationError("--publish-from '\(text)' is not an address or CIDR block (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1)") }
                return range
            }
        }
        configuration.maxRecordBytes = maxRecordBytes
        configuration.trustedProxies = try trustedProxies.map { text in
            guard let range = AddressRange(text) else { throw ValidationError("--trusted-proxy '\(text)' is not an address or CIDR block") }
            return range
        }
        configuration.basePath = basePath
        if let authSecretFile {
            do {
                configuration.access = AccessPolicy(secret: try AccessPolicy.loadSecret(path: authSecretFile))
            } catch let error as AuthConfigurationError {
                throw ValidationError(error.description)
            }
        }
        configuration.deflateEnabled = deflate
        configuration.deflateLevel = deflateLevel
        configuration.deflateThreshold = deflateThreshold
        if let problem = configuration.validationErrors().first { throw ValidationError(problem) }

        TerminationSignals.install()
        var logger = Logger(label: "tailgate")
        logger.logLevel = .info
        let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoops)
        let busConfiguration = BusConfiguration(
            workerLimits: WorkerLimits(ringRecords: ringRecords, ringBytes: ringBytes), retention: .seconds(Int64(retention)))
        let bus = LogBus(configuration: busConfiguration, eventLoopGroup: group)
        let server: GatewayServer
        do {
            server = try await GatewayServer.start(configuration: configuration, bus: bus, group: group, logger: logger)
        } catch let error as IOError {
            throw ValidationError("cannot listen on \(host):\(port): \(error.description)")
        }
        let demoGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fleet = demo > 0 ? try DemoFleet(bus: bus, count: demo, rate: demoRate, loop: demoGroup.next()) : nil

        let displayHost = host.contains(":") ? "[\(host)]" : host
        let base = "http://\(displayHost):\(server.port)/"
        var line = "tailgate listening on \(base) — dashboard \(base), streams ws://\(displayHost):\(server.port)/ws/workers/<id>"
        line += ", compression \(deflate ? "on" : "off")"
        line += configuration.access.isEnabled ? ", auth on (tokens required)" : ", auth off"
        line += ", \(eventLoops) event loop\(eventLoops == 1 ? "" : "s")"
        if demo > 0 { line += ", \(demo) demo worker\(demo == 1 ? "" : "s") at \(Int(demoRate))/s" }
        print(line)
        fflush(nil)

        await TerminationSignals.wait()
        print("tailgate shutting down: closing \(server.openConnections) connection(s) with 1001")
        fflush(nil)
        fleet?.pause()
        await server.shutdown()
        try? await demoGroup.shutdownGracefully()
        try? await group.shutdownGracefully()
    }
}

/// SIGINT and SIGTERM, caught from the moment `install()` returns (before the start-up line is
/// printed), so that no signal is lost or kills the process while the gateway starts.
enum TerminationSignals {
    nonisolated(unsafe) private static var readEnd: Int32 = -1
    nonisolated(unsafe) fileprivate static var writeEnd: Int32 = -1

    /// Installs the handlers. Call once, before the gateway starts.
    static func install() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        readEnd = fds[0]
        writeEnd = fds[1]
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { _ in
                var byte: UInt8 = 1
                _ = write(TerminationSignals.writeEnd, &byte, 1)
            }
        }
    }

    /// Waits until one of the signals arrives.
    static func wait() async {
        let readFD = readEnd
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                var byte: UInt8 = 0
                while read(readFD, &byte, 1) < 0 && errno == EINTR {}
                continuation.resume()
            }
        }
    }
}

/// Reads sizes such as `8MiB`, `512KiB`, `1GiB`, `65536` (bytes).
enum ByteSize {
    static func parse(_ text: String) throws -> Int {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 1_000_000_000),
                                      ("MB", 1_000_000), ("KB", 1000), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let number = Int(text.dropLast(suffix.count)), number >= 0 { return number * factor }
            break
        }
        if let number = Int(text), number >= 0 { return number }
        throw ValidationError("'\(text)' is not a size (examples: 65536, 512KiB, 8MiB, 1GiB)")
    }
}
