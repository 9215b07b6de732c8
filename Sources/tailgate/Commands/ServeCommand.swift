import ArgumentParser
import Foundation
import Dispatch
import Logging
import NIOCore
import NIOPosix
import TailgateCore
import TailgateDemo
import TailgateRedisStore
import TailgateServer
import TailgateStore
#if canImport(Glibc)
import Glibc
#endif

/// `tailgate serve`: runs the gateway.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
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

    @Option(name: .customLong("max-workers"), help: "Workers held at once, running and stopped; at the limit a new one replaces the oldest stopped worker, or is refused (503) when all run.")
    var maxWorkers = 10_000

    @Option(name: .customLong("idle-stop"), help: "Seconds a worker published from another process may go with no publisher connected and no record before it is stopped (its subscribers get end with the reason); 0: never.")
    var idleStop = 600

    @Option(name: .customLong("ring-memory-total"), help: "Record bytes all rings together keep (e.g. 1GiB; 0: no total). Over it the oldest stopped workers go first, then each ring is trimmed to an equal share.", transform: ByteSize.parse)
    var ringMemoryTotal = 1 << 30

    @Option(name: .customLong("data-dir"), help: ArgumentHelp(
        "Folder where every run's records are kept (created when missing).",
        discussion: "Runs survive restarts and stay readable after their worker stops, until --retain-days or --retain-bytes removes them."))
    var dataDir = "./tailgate-data"

    @Flag(name: .customLong("memory-only"), help: "Keep no history on disk: records live only in the rings (lost on restart).")
    var memoryOnly = false

    @Option(name: .customLong("store"), help: ArgumentHelp(
        "Keep the history in Redis instead of --data-dir: redis://[user:password@]host[:port][/db].",
        discussion: "The shared store for several gateways (docs/REDIS.md). --retain-days and --retain-bytes apply to it (size --retain-bytes for Redis's memory); --fsync does not (Redis's own persistence does)."))
    var store: String?

    @Option(name: .customLong("lease-ttl"), help: ArgumentHelp(
        "With --store: seconds a gateway's writer lease on a worker lasts unless renewed (renewed every third of it).",
        discussion: "One gateway at a time writes a worker's runs; when it dies, another may continue them this long after (docs/REDIS.md)."))
    var leaseTTL: Double = 10

    @Option(name: .customLong("hand-back"), help: ArgumentHelp(
        "With --store: seconds a worker published from another process may go with no publisher connected here before this gateway gives its run back; 0: never.",
        discussion: "The gateway then stops writing the run (it releases the writer lease and follows the run from Redis), so that the run's publisher can continue it through another gateway, e.g. when nginx sends it back to a gateway that restarted (docs/REDIS.md)."))
    var handBack = 10

    @Option(name: .customLong("store-queue"), help: ArgumentHelp(
        "With --store: most bytes of records waiting for Redis, e.g. 64MiB (at least 64KiB).",
        discussion: "While Redis is unreachable or slow, records wait up to this much; beyond it they are dropped for Redis (kept in memory only) and counted in /api/stats store.last_error and the log (docs/REDIS.md)."),
        transform: ByteSize.parse)
    var storeQueue = 64 << 20

    @Option(name: .customLong("fsync"), help: ArgumentHelp(
        "When written records are forced to disk: interval (every second), always (before a publisher is answered) or never.",
        discussion: "What a publisher was told survives a kill -9 of the gateway with any setting; this only matters if the machine crashes."))
    var fsync = FsyncPolicy.interval

    @Option(name: .customLong("retain-days"), help: "Days a finished run is kept on disk (0: no age limit).")
    var retainDays: Double = 14

    @Option(name: .customLong("retain-bytes"), help: "Most bytes of history kept on disk, e.g. 10GiB (0: no limit); over it the oldest runs go first.", transform: ByteSize.parse)
    var retainBytes = 10 << 30

    @Option(name: .customLong("default-tail"), help: "Records replayed to a subscriber that gives neither since nor tail.")
    var defaultTail = 1000

    @Option(name: .customLong("max-connections"), help: "Open connections in all.")
    var maxConnections = 10_000

    @Option(name: .customLong("max-subscribers-per-worker"), help: "Subscribers of one worker.")
    var maxSubscribersPerWorker = 1000

    @Option(name: .customLong("max-stream-subscriptions"), help: "Worker subscriptions on one /ws/streams or /api/streams/events connection.")
    var maxStreamSubscriptions = 1000

    @Option(name: .customLong("max-connections-per-ip"), help: "Open connections from one client address.")
    var maxConnectionsPerIP = 256

    @Option(name: .customLong("allowed-origin"), help: "An Origin allowed besides the gateway's own (repeatable; * allows all).")
    var allowedOrigins: [String] = []

    @Option(name: .customLong("allowed-host"), help: ArgumentHelp(
        "A host name clients may use besides IP addresses, localhost and --host (repeatable; * allows any).",
        discussion: "Requests naming another Host are refused with 403 (against DNS rebinding); requests relayed by a --trusted-proxy are not checked."))
    var allowedHosts: [String] = []

    @Option(name: .customLong("stall-timeout"), help: "Seconds a subscriber may take no data before it is closed with 1013.")
    var stallTimeout = 60

    @Option(name: .customLong("ping-interval"), help: "Seconds of client silence before the gateway pings.")
    var pingInterval = 30

    @Option(name: .customLong("pong-timeout"), help: "Seconds the gateway waits for the answer to a ping before it closes the stream with 1013.")
    var pongTimeout = 30

    @Option(name: .customLong("request-timeout"), help: "Seconds a request may take to arrive whole once its head has come (then 408); published bodies excepted.")
    var requestTimeout = 30

    @Option(name: .customLong("publisher-idle-timeout"), help: "Seconds a publisher's open body (POST …/records) may stay silent before it is answered 408 and closed; what it published is kept.")
    var publisherIdleTimeout = 600

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

    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Write a settled stream's live batches straight to its socket when nothing of it waits in the event loop's queue.",
        discussion: "About a quarter less server CPU per delivered record at a thousand subscribers (Benchmarks/results/FINDINGS.md, \"Direct writes\"). --no-direct-writes sends every write through SwiftNIO's channel, as before."))
    var directWrites = true

    // Metrics (GET /metrics) and readiness (GET /readyz).
    @Option(name: .customLong("metrics-from"), help: ArgumentHelp(
        "Addresses allowed to read /metrics, as CIDR (repeatable; replaces the default 127.0.0.0/8 and ::1).",
        discussion: "With --auth-secret-file, a token of scope metrics (tailgate token --scope metrics) is accepted from any address."))
    var metricsFrom: [String] = []

    // Server logs (standard error).
    @Option(name: .customLong("log-level"), help: "Least level logged: trace, debug, info (default), notice, warning, error or critical.",
            transform: LogLevelArgument.parse)
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("log-format"), help: "Log lines as text, or json (one JSON object per line, for log shippers).")
    var logFormat = LogFormat.text

    @Option(name: .customLong("self-worker"), help: ArgumentHelp("Also publish the gateway's own log lines as the worker NAME, so the dashboard shows them.", valueName: "NAME"))
    var selfWorker: String?

    @Flag(name: .customLong("metrics-per-worker"), help: "Add per-worker series to /metrics, labelled worker=<id>: 3 per worker held (at most 3 x --max-workers).")
    var metricsPerWorker = false

    // Configuration from TAILGATE_<FLAG> variables and a file (Support/ConfigurationSources.swift).
    @Option(name: .customLong("config"), help: ArgumentHelp(
        "A file of settings, one `flag = value` a line (e.g. port = 8080; also TAILGATE_CONFIG).",
        discussion: "Every flag is also TAILGATE_<FLAG> in the environment (TAILGATE_DATA_DIR=/var/lib/tailgate; repeatable flags as comma-separated lists). Precedence: command line > environment > file > default.",
        valueName: "file"))
    var config: String?

    @Flag(name: .customLong("print-config"), help: "Print the effective configuration and where each value comes from (secrets redacted), then exit.")
    var printConfig = false

    /// Checks what only the command line knows; every gateway setting is checked by the library
    /// (`ServerConfiguration.validate`, `BusConfiguration.validate`) and reported under its flag.
    func validate() throws {
        guard demo >= 0 else { throw ValidationError("--demo must be 0 or more") }
        guard demoRate >= 1 && demoRate <= 100_000 else { throw ValidationError("--demo-rate must be between 1 and 100000") }
        guard (1...256).contains(eventLoops) else { throw ValidationError("--event-loops must be between 1 and 256") }
        for (flag, seconds) in [("--retention", retention), ("--idle-stop", idleStop), ("--stall-timeout", stallTimeout), ("--ping-interval", pingInterval),
                                ("--pong-timeout", pongTimeout), ("--request-timeout", requestTimeout),
                                ("--publisher-idle-timeout", publisherIdleTimeout), ("--hand-back", handBack)] where seconds < 0 || seconds > 365 * 86_400 {
            throw ValidationError("\(flag) must be between 0 and \(365 * 86_400) seconds")
        }
        guard retainDays >= 0 && retainDays <= 36_500 else { throw ValidationError("--retain-days must be between 0 and 36500") }
        if let selfWorker, WorkerID(selfWorker) == nil {
            throw ValidationError("--self-worker '\(selfWorker)' is not a valid worker id")
        }
        _ = try serverConfiguration()
        _ = try busConfiguration()
        _ = try storeConfiguration()
        _ = try redisStoreConfiguration()
    }

    /// The library setting each flag sets, for error messages.
    static let flagOfSetting: [String: String] = [
        "host": "--host", "port": "--port", "publicDirectory": "--public-dir", "defaultTail": "--default-tail",
        "maxConnections": "--max-connections", "maxSubscribersPerWorker": "--max-subscribers-per-worker",
        "maxStreamSubscriptions": "--max-stream-subscriptions",
        "maxConnectionsPerIP": "--max-connections-per-ip", "stallTimeout": "--stall-timeout", "pingInterval": "--ping-interval",
        "pongTimeout": "--pong-timeout", "requestBodyTimeout": "--request-timeout", "publisherIdleTimeout": "--publisher-idle-timeout", "deflateLevel": "--deflate-level", "deflateThreshold": "--deflate-threshold",
        "maxRecordBytes": "--max-record-bytes", "basePath": "--base-path", "retention": "--retention",
        "workerLimits.ringRecords": "--ring-records", "workerLimits.ringBytes": "--ring-bytes",
        "maxWorkers": "--max-workers", "idleStop": "--idle-stop", "ringMemoryTotal": "--ring-memory-total", "handBackAfter": "--hand-back",
        "directory": "--data-dir", "retainAge": "--retain-days", "retainBytes": "--retain-bytes",
    ]

    /// A library `ConfigurationError` in the command line's words: its first problem, under its flag.
    static func flagError(_ error: ConfigurationError) -> ValidationError {
        let problem = error.problems.first ?? .init(setting: "configuration", message: "is invalid")
        return ValidationError("\(flagOfSetting[problem.setting] ?? problem.setting) \(problem.message)")
    }

    func serverConfiguration() throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.publicDirectory = PublicDirectory.resolve(publicDir)
        configuration.version = TailgateVersion.current
        configuration.defaultTail = defaultTail
        configuration.maxConnections = maxConnections
        configuration.maxSubscribersPerWorker = maxSubscribersPerWorker
        configuration.maxStreamSubscriptions = maxStreamSubscriptions
        configuration.maxConnectionsPerIP = maxConnectionsPerIP
        configuration.allowedOrigins = allowedOrigins
        configuration.allowedHosts = allowedHosts
        configuration.stallTimeout = .seconds(Int64(stallTimeout))
        configuration.pingInterval = .seconds(Int64(pingInterval))
        configuration.pongTimeout = .seconds(Int64(pongTimeout))
        configuration.requestBodyTimeout = .seconds(Int64(requestTimeout))
        configuration.publisherIdleTimeout = .seconds(Int64(publisherIdleTimeout))
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
                configuration.access = AccessPolicy(keys: try AccessPolicy.loadKeys(path: authSecretFile))
            } catch {
                throw ValidationError(error.description)
            }
        }
        configuration.deflateEnabled = deflate
        configuration.deflateLevel = deflateLevel
        configuration.deflateThreshold = deflateThreshold
        configuration.directWrites = directWrites
        if !metricsFrom.isEmpty {
            configuration.metricsFrom = try metricsFrom.map { text in
                guard let range = AddressRange(text) else { throw ValidationError("--metrics-from '\(text)' is not an address or CIDR block (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1)") }
                return range
            }
        }
        configuration.metricsPerWorker = metricsPerWorker
        do {
            try configuration.validate()
        } catch {
            throw Self.flagError(error)
        }
        return configuration
    }

    func busConfiguration() throws -> BusConfiguration {
        let configuration = BusConfiguration(workerLimits: WorkerLimits(ringRecords: ringRecords, ringBytes: ringBytes),
                                             retention: .seconds(Int64(retention)), maxWorkers: maxWorkers,
                                             idleStop: idleStop > 0 ? .seconds(Int64(idleStop)) : nil,
                                             ringMemoryTotal: ringMemoryTotal > 0 ? ringMemoryTotal : nil,
                                             handBackAfter: handBack > 0 ? .seconds(Int64(handBack)) : nil)
        do {
            try configuration.validate()
        } catch {
            throw Self.flagError(error)
        }
        return configuration
    }

    /// The shared store's settings, `nil` without `--store`.
    func redisStoreConfiguration() throws -> RedisStoreConfiguration? {
        guard let store else { return nil }
        guard !memoryOnly else { throw ValidationError("--store and --memory-only exclude each other") }
        guard leaseTTL >= 0.3 && leaseTTL <= 3600 else { throw ValidationError("--lease-ttl must be between 0.3 and 3600 seconds") }
        guard storeQueue >= 64 << 10 else { throw ValidationError("--store-queue must be at least 64KiB") }
        do {
            var configuration = try RedisStoreConfiguration(url: store)
            // Names this gateway in the writer leases it holds (for people reading a refusal).
            let displayHost = host.contains(":") ? "[\(host)]" : host
            configuration.instanceLabel = port == 0 ? "\(displayHost), pid \(getpid())" : "\(displayHost):\(port), pid \(getpid())"
            configuration.retainAge = retainDays > 0 ? .nanoseconds(Int64(retainDays * 86_400 * 1e9)) : nil
            configuration.retainBytes = retainBytes > 0 ? retainBytes : nil
            configuration.leaseTTL = .milliseconds(Int64(leaseTTL * 1000))
            configuration.writeQueueBytes = storeQueue
            try configuration.validate()
            return configuration
        } catch {
            throw ValidationError("--store: \(error)")
        }
    }

    /// The embedded store's settings, `nil` with `--memory-only` or `--store`.
    func storeConfiguration() throws -> StoreConfiguration? {
        guard !memoryOnly, store == nil else { return nil }
        let configuration = StoreConfiguration(directory: dataDir, fsync: fsync,
                                               retainAge: retainDays > 0 ? .nanoseconds(Int64(retainDays * 86_400 * 1e9)) : nil,
                                               retainBytes: retainBytes > 0 ? retainBytes : nil)
        do {
            try configuration.validate()
        } catch {
            throw Self.flagError(error)
        }
        return configuration
    }

    func run() async throws {
        if printConfig {
            print(ConfigurationSources.render(self))
            return
        }
        ServerLogging.bootstrap(format: logFormat, level: logLevel)
        // Lines logged while starting come after the start-up line (or the error that ends the start).
        defer { ServerLogging.release() }
        let configuration = try serverConfiguration()
        let signals = ShutdownSignals.watch()
        let logger = Logger(label: "tailgate")
        let loopTicks = LoopTicks()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoops, metricsDelegate: LoopTickCounter(ticks: loopTicks))
        var store: (any RunStore)?
        let redisConfiguration = try redisStoreConfiguration()
        if let redisConfiguration {
            // Redis out of reach is no reason not to start: the store says `failed` and keeps trying.
            var storeLogger = logger
            storeLogger.logLevel = max(logLevel, .notice)
            store = try RedisRunStore(configuration: redisConfiguration, logger: storeLogger)
        } else if let storeConfiguration = try storeConfiguration() {
            do {
                // Opening is told by the start-up line; the store logs its trouble (notice and above).
                var storeLogger = logger
                storeLogger.logLevel = max(logLevel, .notice)
                store = try FileRunStore(configuration: storeConfiguration, logger: storeLogger)
            } catch {
                throw ValidationError("--data-dir \(dataDir): \(error)")
            }
        }
        let bus = try LogBus(configuration: try busConfiguration(), eventLoopGroup: group, store: store, loopTicks: loopTicks)
        // Runs that other processes were publishing go on: their subscribers may resume before their
        // publishers are back.
        let resumedRuns = bus.resumeRemoteRuns()
        if let selfWorker, let id = WorkerID(selfWorker) {
            do {
                ServerLogging.publish(into: try bus.register(id))
            } catch {
                throw ValidationError("--self-worker \(selfWorker): \(error)")
            }
        }
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
        var line = "tailgate listening on \(base) — version \(TailgateVersion.current), dashboard \(base), streams ws://\(displayHost):\(server.port)/ws/workers/<id>"
        line += ", compression \(deflate ? "on" : "off")"
        line += configuration.access.isEnabled ? ", auth on (tokens required)" : ", auth off"
        line += ", \(eventLoops) event loop\(eventLoops == 1 ? "" : "s")"
        if demo > 0 { line += ", \(demo) demo worker\(demo == 1 ? "" : "s") at \(Int(demoRate))/s" }
        if let store, let redisConfiguration {
            let health = store.health()
            line += ", history in \(redisConfiguration.redis.displayAddress) (\(health.runs) run\(health.runs == 1 ? "" : "s")"
            if resumedRuns > 0 { line += ", \(resumedRuns) published from other processes going on" }
            line += health.state == "ok" ? ")" : ", \(health.lastError ?? "not connected"))"
        } else if let store {
            let health = store.health()
            line += ", history in \(Self.absolutePath(dataDir)) (\(health.runs) run\(health.runs == 1 ? "" : "s")"
            if resumedRuns > 0 { line += ", \(resumedRuns) published from other processes going on" }
            line += ", fsync \(fsync.rawValue))"
        } else {
            line += ", history in memory only"
        }
        print(line)
        fflush(nil)
        ServerLogging.release()
        var started: Logger.Metadata = ["version": "\(TailgateVersion.current)", "listen": "\(base)", "pid": "\(getpid())",
                                        "public_dir": "\(configuration.publicDirectory)", "auth": "\(configuration.access.isEnabled ? "on" : "off")"]
        started["data_dir"] = "\(store == nil ? "memory-only" : redisConfiguration?.redis.displayAddress ?? Self.absolutePath(dataDir))"
        if let selfWorker { started["self_worker"] = "\(selfWorker)" }
        logger.info("tailgate started", metadata: started)

        for await _ in signals { break }
        print("tailgate shutting down: closing \(server.openConnections) connection(s) with 1001")
        fflush(nil)
        logger.info("tailgate stopping", metadata: ["open_connections": "\(server.openConnections)"])
        fleet?.pause()
        await server.shutdown()
        logger.info("tailgate stopped")
        // The gateway's own worker stops with the rest; nothing more is published into it.
        ServerLogging.publish(into: nil)
        // In-process runs end as interrupted; the store writes what it holds and closes.
        bus.close()
        try? await demoGroup.shutdownGracefully()
        try? await group.shutdownGracefully()
    }

    /// `path` made absolute against the working directory, for the start-up line.
    static func absolutePath(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let directory = FileManager.default.currentDirectoryPath
        return directory + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }
}

extension FsyncPolicy: ExpressibleByArgument {}
