import Logging
import NIOCore
import NIOWebSocket
import TailgateCore

/// What the gateway logs about its clients and workers, through the `Logger` given to
/// `GatewayServer.start`: refusals (with their code and the client's address; authentication
/// failures at warning, never with the token), subscribers closed for stalling or sending too much,
/// ingest bodies with rejected lines, and workers registered and stopped.
///
/// Nothing here runs per record: refusals and closes are logged per connection or request, ingest
/// errors per published body, and workers are looked at once a second. Refusals, closes and ingest
/// errors are rate-limited per reason (at most one line per `interval` for each; the next line tells
/// how many were left out).
public final class ServerLog: Sendable {
    /// The logger everything goes to.
    public let logger: Logger
    /// The least time between two lines of one reason.
    public let interval: TimeAmount
    private let reasons = Lock<[String: Reason]>([:])
    private let workers = Lock<[String: WorkerSeen]>([:])

    private struct Reason {
        var last: NIODeadline
        var suppressed: Int
    }

    private struct WorkerSeen {
        var epoch: String
        var stopped: Bool
    }

    /// The refusal codes of failed authentication or authorization, logged at warning.
    static let authCodes: Set<String> = ["auth_required", "token_invalid", "token_expired", "token_not_yet_valid",
                                         "scope_not_allowed", "worker_not_allowed", "publish_not_allowed", "metrics_not_allowed"]

    public init(logger: Logger, interval: TimeAmount = .seconds(10)) {
        self.logger = logger
        self.interval = interval
    }

    /// Whether a line of `reason` may be logged now, and how many were left out before it. Reasons
    /// come from fixed tables (refusal codes, close codes), so the map stays small.
    func admit(_ reason: String, now: NIODeadline = .now()) -> Int? {
        reasons.withLock { table -> Int? in
            if var entry = table[reason] {
                guard now - entry.last >= interval else {
                    entry.suppressed += 1
                    table[reason] = entry
                    return nil
                }
                table[reason] = Reason(last: now, suppressed: 0)
                return entry.suppressed
            }
            table[reason] = Reason(last: now, suppressed: 0)
            return 0
        }
    }

    private static func withSuppressed(_ metadata: Logger.Metadata, _ suppressed: Int) -> Logger.Metadata {
        guard suppressed > 0 else { return metadata }
        var metadata = metadata
        metadata["suppressed_since_last"] = "\(suppressed)"
        return metadata
    }

    /// A request answered with a status of 400 or more. `path` is logged without its query (which may
    /// hold an access token).
    func refusal(code: String?, status: Int, client: String, method: String, uri: String) {
        let code = code ?? "status_\(status)"
        let level: Logger.Level = Self.authCodes.contains(code) ? .warning : (status >= 500 ? .warning : .notice)
        guard logger.logLevel <= level else { return }
        let known = RefusalCounters.known.contains { $0.code == code } || code.hasPrefix("status_")
        guard let suppressed = admit("refusal:" + (known ? code : "other")) else { return }
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let message: Logger.Message = Self.authCodes.contains(code) ? "authentication failed" : "request refused"
        logger.log(level: level, message, metadata: Self.withSuppressed([
            "reason": "\(code)", "status": "\(status)", "client": "\(client)", "method": "\(method)", "path": "\(path)",
        ], suppressed))
    }

    /// A subscriber's stream closed by the gateway with `code` (stalled, too big, unanswered ping,
    /// token expired, shutdown). Stalls and too-big messages at notice, the rest at debug.
    func subscriberClosed(worker: String, client: String, code: WebSocketErrorCode, reason: String) {
        let level: Logger.Level
        let key: String
        switch code {
        case .tryAgainLater: (level, key) = (.notice, "close:stalled")
        case .messageTooLarge: (level, key) = (.notice, "close:too_big")
        case .goingAway: (level, key) = (.debug, "close:going_away")
        default: (level, key) = (.info, "close:\(code)")
        }
        guard logger.logLevel <= level, let suppressed = admit(key) else { return }
        logger.log(level: level, "subscriber closed", metadata: Self.withSuppressed([
            "worker": "\(worker)", "client": "\(client)", "close_code": "\(ServerLog.number(code))", "reason": "\(reason)",
        ], suppressed))
    }

    /// A published body some of whose lines were rejected.
    func ingestErrors(worker: String, client: String, rejected: Int, accepted: Int, first: (line: Int, message: String)?) {
        guard logger.logLevel <= .warning, let suppressed = admit("ingest:rejected") else { return }
        var metadata: Logger.Metadata = ["worker": "\(worker)", "client": "\(client)", "rejected": "\(rejected)", "accepted": "\(accepted)"]
        if let first {
            metadata["first_error_line"] = "\(first.line)"
            metadata["first_error"] = "\(first.message)"
        }
        logger.warning("published lines rejected", metadata: Self.withSuppressed(metadata, suppressed))
    }

    /// Compares the bus's workers with those seen last time: logs each new run (registered) and each
    /// run that stopped since. Called about once a second, off the event loops' record paths.
    func lookAtWorkers(_ bus: LogBus) {
        let current = bus.allWorkers()
        var registered: [Worker] = []
        var stopped: [Worker] = []
        workers.withLock { seen in
            var next: [String: WorkerSeen] = [:]
            next.reserveCapacity(current.count)
            for worker in current {
                let key = worker.id.description
                let isStopping = worker.isStopping
                let before = seen[key]
                if before == nil || before!.epoch != worker.epoch {
                    registered.append(worker)
                    if isStopping { stopped.append(worker) }
                } else if isStopping && !before!.stopped {
                    stopped.append(worker)
                }
                next[key] = WorkerSeen(epoch: worker.epoch, stopped: isStopping)
            }
            seen = next
        }
        for worker in registered {
            // A mirror serves a run another gateway writes (a store shared with other gateways).
            logger.info(worker.isMirror ? "worker followed from the shared store" : "worker registered",
                        metadata: ["worker": "\(worker.id)", "epoch": "\(worker.epoch)", "owner": "\(worker.owner.rawValue)"])
        }
        for worker in stopped {
            let snapshot = worker.snapshot()
            var metadata: Logger.Metadata = ["worker": "\(worker.id)", "epoch": "\(worker.epoch)", "status": "\(snapshot.status)",
                                             "records": "\(snapshot.lastSeq)"]
            if let reason = snapshot.reason { metadata["reason"] = "\(reason)" }
            if let exitCode = snapshot.exitCode { metadata["exit_code"] = "\(exitCode)" }
            logger.info("worker stopped", metadata: metadata)
        }
    }

    static func number(_ code: WebSocketErrorCode) -> Int { Int(UInt16(webSocketErrorCode: code)) }
}
