import Logging
import NIOCore
import NIOPosix
import Synchronization
import TailgateCore
import Testing
@testable import TailgateServer

/// What the gateway logs (`ServerLog`): refusals rate-limited per reason, no query strings (tokens),
/// workers registered and stopped.
@Suite struct ServerLogTests {
    final class Lines: Sendable {
        struct Line: Sendable {
            var level: Logger.Level
            var message: String
            var metadata: [String: String]
        }

        let lines = Mutex<[Line]>([])

        var logger: Logger {
            Logger(label: "server-log-test") { _ in Handler(lines: self) }
        }

        var all: [Line] { lines.withLock { $0 } }

        struct Handler: LogHandler {
            let lines: Lines
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace

            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }

            func log(event: LogEvent) {
                let metadata = (event.metadata ?? [:]).mapValues(\.description)
                lines.lines.withLock { $0.append(Line(level: event.level, message: event.message.description, metadata: metadata)) }
            }
        }
    }

    @Test func refusalsAreRateLimitedPerReasonAndLogNoQuery() {
        let lines = Lines()
        let log = ServerLog(logger: lines.logger, interval: .seconds(3600))
        for _ in 0..<5 {
            log.refusal(code: "token_invalid", status: 401, client: "10.0.0.7", method: "GET", uri: "/api/workers?access_token=SECRET")
        }
        log.refusal(code: "not_found", status: 404, client: "10.0.0.8", method: "GET", uri: "/nope")
        log.refusal(code: "a_code_nobody_knows", status: 400, client: "10.0.0.9", method: "GET", uri: "/x")
        log.refusal(code: "another_unknown_code", status: 400, client: "10.0.0.9", method: "GET", uri: "/y")
        let all = lines.all
        #expect(all.map(\.message) == ["authentication failed", "request refused", "request refused"])
        #expect(all[0].level == .warning)
        #expect(all[0].metadata["path"] == "/api/workers")
        #expect(all[0].metadata["client"] == "10.0.0.7")
        #expect(all[0].metadata["reason"] == "token_invalid")
        #expect(all[1].level == .notice && all[1].metadata["reason"] == "not_found")
        #expect(!all.contains { $0.metadata.values.contains { $0.contains("SECRET") } })
    }

    @Test func theNextLineTellsHowManyWereLeftOut() {
        let log = ServerLog(logger: Lines().logger, interval: .seconds(10))
        let start = NIODeadline.now()
        #expect(log.admit("r", now: start) == 0)
        #expect(log.admit("r", now: start + .seconds(1)) == nil)
        #expect(log.admit("r", now: start + .seconds(2)) == nil)
        #expect(log.admit("other", now: start + .seconds(2)) == 0)
        #expect(log.admit("r", now: start + .seconds(11)) == 2)
    }

    @Test func workersRegisteredAndStoppedAreLoggedOnce() throws {
        let lines = Lines()
        let log = ServerLog(logger: lines.logger)
        let bus = LogBus(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
        let worker = try bus.register(WorkerID("job-1")!)
        log.lookAtWorkers(bus)
        log.lookAtWorkers(bus)
        worker.stop()
        log.lookAtWorkers(bus)
        log.lookAtWorkers(bus)
        #expect(lines.all.map(\.message) == ["worker registered", "worker stopped"])
        #expect(lines.all.allSatisfy { $0.metadata["worker"] == "job-1" })
        bus.close()
    }
}
