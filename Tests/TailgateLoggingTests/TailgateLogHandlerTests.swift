import Logging
import NIOCore
import Synchronization
import TailgateCore
import TailgateLogging
import Testing

/// A bus with one worker on a loop that the test drives.
final class Fixture {
    let loop = ManualEventLoop()
    let bus: LogBus
    let worker: Worker

    init(id: String = "002050.SZ") throws {
        bus = LogBus(eventLoopGroup: loop)
        worker = try bus.register(try #require(WorkerID(id)))
    }

    deinit { loop.close() }

    /// Drains what was published and returns the ring's records, parsed.
    func records() throws -> [JSONValue] {
        loop.run()
        let texts = worker.withRing { ring, _ in
            var texts: [String] = []
            ring.forEachRecord(from: 0) { _, bytes in
                texts.append(String(buffer: bytes))
                return true
            }
            return texts
        }
        return try texts.map { try JSONParser.parse($0) }
    }

    func logger(label: String = "strategy.ma", logLevel: Logger.Level = .trace,
                metadataProvider: Logger.MetadataProvider? = nil) -> Logger {
        let worker = worker
        var logger = Logger(label: label) { label in
            TailgateLogHandler(label: label, worker: worker, metadataProvider: metadataProvider)
        }
        logger.logLevel = logLevel
        return logger
    }
}

/// What a capturing handler saw of one log line.
struct CapturedLine: Sendable, Equatable {
    var level: Logger.Level
    var message: String
    var metadata: [String: String]
    var source: String
    var function: String
    var line: UInt
}

final class LineStore: Sendable {
    private let lines = Lock<[CapturedLine]>([])
    init() {}
    func append(_ line: CapturedLine) { lines.withLock { $0.append(line) } }
    var all: [CapturedLine] { lines.withLock { $0 } }
}

/// A second handler, standing in for the console, that keeps what it is given.
struct CapturingLogHandler: LogHandler {
    let store: LineStore
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(store: LineStore, logLevel: Logger.Level = .trace) {
        self.store = store
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        store.append(CapturedLine(
            level: event.level, message: event.message.description, metadata: merged.mapValues(\.description),
            source: event.source, function: event.function, line: event.line))
    }
}

@Suite("TailgateLogHandler")
struct TailgateLogHandlerTests {
    @Test func mapsEveryField() throws {
        let fixture = try Fixture()
        let logger = fixture.logger(label: "strategy.ma")
        logger.warning("fill \"A\" at 10.5", metadata: ["order": "42"], source: "Engine", file: "Engine.swift",
                       function: "onBar(_:)", line: 123)
        let records = try fixture.records()
        try #require(records.count == 1)
        let record = records[0]
        #expect(record["seq"]?.intValue == 1)
        #expect(record["level"] == .string("WARNING"))
        #expect(record["message"] == .string("fill \"A\" at 10.5"))
        #expect(record["logger_name"] == .string("strategy.ma"))
        #expect(record["module"] == .string("Engine"))
        #expect(record["func_name"] == .string("onBar(_:)"))
        #expect(record["line_no"]?.intValue == 123)
        #expect(record["metadata"] == .object(["order": .string("42")]))
        let timestamp = try #require(record["timestamp"]?.stringValue)
        #expect(Timestamp(iso8601: timestamp) != nil)
    }

    @Test func callSiteDefaults() throws {
        let fixture = try Fixture()
        let logger = fixture.logger()
        let line = #line + 1
        logger.info("from the call site")
        let record = try #require(try fixture.records().first)
        // Without an explicit source, swift-log derives the module from #fileID.
        #expect(record["module"] == .string("TailgateLoggingTests"))
        #expect(record["func_name"] == .string("callSiteDefaults()"))
        #expect(record["line_no"]?.intValue == line)
        #expect(record["metadata"] == nil)
    }

    static let levels: [(Logger.Level, String)] = [
        (.trace, "TRACE"), (.debug, "DEBUG"), (.info, "INFO"), (.notice, "NOTICE"),
        (.warning, "WARNING"), (.error, "ERROR"), (.critical, "CRITICAL"),
    ]

    @Test("maps swift-log levels onto the wire's", arguments: levels)
    func mapsLevels(_ level: Logger.Level, _ wireName: String) throws {
        #expect(TailgateLogHandler.level(level).rawValue == wireName)
        let fixture = try Fixture()
        fixture.logger().log(level: level, "at \(wireName)")
        let records = try fixture.records()
        #expect(records.map { $0["level"] } == [.string(wireName)])
        #expect(records.map { $0["message"] } == [.string("at \(wireName)")])
    }

    @Test func respectsTheLogLevel() throws {
        let fixture = try Fixture()
        let worker = fixture.worker
        var logger = Logger(label: "lvl") { TailgateLogHandler(label: $0, worker: worker) }
        #expect(logger.logLevel == .info)  // the handler's default
        logger.trace("t")
        logger.debug("d")
        logger.info("i")
        logger.error("e")
        logger.logLevel = .debug
        logger.debug("d2")
        let messages = try fixture.records().map { $0["message"]?.stringValue }
        #expect(messages == ["i", "e", "d2"])
    }

    @Test func mergesHandlerAndExplicitMetadataExplicitWins() throws {
        let fixture = try Fixture()
        var logger = fixture.logger()
        logger[metadataKey: "strategy"] = "MA-cross"
        logger[metadataKey: "k"] = "from handler"
        #expect(logger[metadataKey: "strategy"] == "MA-cross")
        logger.info("one", metadata: ["k": "explicit", "n": .stringConvertible(5)])
        logger.info("two")
        logger.info("three", metadata: ["list": .array(["a", "b"]), "dict": .dictionary(["x": "y"])])
        let records = try fixture.records()
        try #require(records.count == 3)
        #expect(records[0]["metadata"] == .object([
            "strategy": .string("MA-cross"), "k": .string("explicit"), "n": .string("5"),
        ]))
        #expect(records[1]["metadata"] == .object(["strategy": .string("MA-cross"), "k": .string("from handler")]))
        let list = Logger.MetadataValue.array(["a", "b"]).description
        let dict = Logger.MetadataValue.dictionary(["x": "y"]).description
        #expect(records[2]["metadata"] == .object([
            "strategy": .string("MA-cross"), "k": .string("from handler"), "list": .string(list), "dict": .string(dict),
        ]))
        // The encoder writes metadata keys sorted.
        let text = fixture.worker.withRing { ring, _ in String(buffer: ring.batch(containing: 1)!.record(1)) }
        #expect(text.hasSuffix(#""metadata":{"k":"explicit","n":"5","strategy":"MA-cross"}}"#))
    }

    @Test func metadataProviderSitsBetweenHandlerAndExplicitMetadata() throws {
        let fixture = try Fixture()
        let provider = Logger.MetadataProvider { ["trace_id": "abc", "k": "from provider"] }
        var logger = fixture.logger(metadataProvider: provider)
        logger[metadataKey: "k"] = "from handler"
        logger[metadataKey: "only_handler"] = "h"
        logger.info("provided")
        logger.info("explicit", metadata: ["k": "explicit"])
        let records = try fixture.records()
        try #require(records.count == 2)
        #expect(records[0]["metadata"] == .object([
            "trace_id": .string("abc"), "k": .string("from provider"), "only_handler": .string("h"),
        ]))
        #expect(records[1]["metadata"] == .object([
            "trace_id": .string("abc"), "k": .string("explicit"), "only_handler": .string("h"),
        ]))
    }

    @Test func keepsMessagesAsTheyAre() throws {
        let fixture = try Fixture()
        let logger = fixture.logger()
        let messages = ["\u{1B}[31mred\u{1B}[0m", "two\nlines", "tab\tand \"quotes\" and \\", "世界 🚀", ""]
        for message in messages { logger.notice("\(message)") }
        #expect(try fixture.records().map { $0["message"]?.stringValue } == messages)
    }

    @Test func linesFromOneLoggerKeepTheirOrderAndSeqs() throws {
        let fixture = try Fixture()
        let logger = fixture.logger()
        for index in 0..<500 { logger.info("line \(index)") }
        // One drain: they travel as one batch.
        #expect(fixture.loop.pendingTasks == 1)
        let records = try fixture.records()
        #expect(records.map { $0["seq"]?.intValue } == Array(1...500))
        #expect(records.map { $0["message"]?.stringValue } == (0..<500).map { "line \($0)" })
        #expect(fixture.worker.withRing { ring, _ in ring.batchCount } == 1)
    }

    @Test func loggingIntoAStoppedWorkerIsDropped() throws {
        let fixture = try Fixture()
        let logger = fixture.logger()
        logger.info("kept")
        fixture.worker.stop()
        logger.info("dropped")
        let records = try fixture.records()
        #expect(records.map { $0["message"]?.stringValue } == ["kept"])
        #expect(fixture.worker.snapshot().state == .stopped)
        // The bus removes it after retention.
        #expect(fixture.bus.worker(fixture.worker.id) === fixture.worker)
        fixture.loop.runScheduledTasks()
        #expect(fixture.bus.worker(fixture.worker.id) == nil)
    }
}

@Suite("MultiplexLogHandler with TailgateLogHandler")
struct DualOutputTests {
    @Test func everyLineGoesToBothOutputs() throws {
        let fixture = try Fixture()
        let worker = fixture.worker
        let console = LineStore()
        var logger = Logger(label: "strategy.ma") { label in
            MultiplexLogHandler([
                TailgateLogHandler(label: label, worker: worker, logLevel: .trace),
                CapturingLogHandler(store: console, logLevel: .trace),
            ])
        }
        logger[metadataKey: "strategy"] = "MA"
        let levels: [Logger.Level] = [.trace, .debug, .info, .notice, .warning, .error, .critical]
        for (index, level) in levels.enumerated() {
            logger.log(level: level, "line \(index)", metadata: ["i": "\(index)"], source: "Engine", function: "run()", line: UInt(index + 1))
        }
        let streamed = try fixture.records()
        let printed = console.all
        #expect(streamed.count == levels.count)
        #expect(printed.count == levels.count)
        #expect(streamed.map { $0["message"]?.stringValue } == printed.map(\.message))
        #expect(streamed.map { $0["level"]?.stringValue } == printed.map { TailgateLogHandler.level($0.level).rawValue })
        #expect(printed.map(\.level) == levels)
        for (record, line) in zip(streamed, printed) {
            #expect(record["metadata"] == .object(line.metadata.mapValues { .string($0) }))
            #expect(line.metadata["strategy"] == "MA")
            #expect(record["module"]?.stringValue == line.source)
            #expect(record["func_name"]?.stringValue == line.function)
            #expect(record["line_no"]?.intValue == Int(line.line))
            #expect(record["logger_name"] == .string("strategy.ma"))
        }
    }

    @Test func eachHandlerKeepsItsOwnLevel() throws {
        let fixture = try Fixture()
        let worker = fixture.worker
        let console = LineStore()
        let logger = Logger(label: "dual") { label in
            MultiplexLogHandler([
                TailgateLogHandler(label: label, worker: worker, logLevel: .warning),
                CapturingLogHandler(store: console, logLevel: .debug),
            ])
        }
        logger.trace("t")
        logger.debug("d")
        logger.info("i")
        logger.warning("w")
        logger.critical("c")
        #expect(console.all.map(\.message) == ["d", "i", "w", "c"])
        #expect(try fixture.records().map { $0["message"]?.stringValue } == ["w", "c"])
    }
}
