import TailgateCore

/// The gateway's endpoints (docs/PROTOCOL.md, "Routes"), read once from a request's path.
///
/// Adding an endpoint: a case here, its path in `init(path:)`, a handler function in `Router`.
enum Route: Equatable {
    /// `GET /healthz`
    case health
    /// `GET /readyz`
    case readiness
    /// `GET /metrics` (Prometheus text format)
    case metrics
    /// `GET /api/workers`
    case workerList
    /// `GET /api/stats`
    case statistics
    /// `GET /api/workers/{id}`
    case worker(WorkerID)
    /// `GET /api/workers/{id}/logs`
    case workerLogs(WorkerID)
    /// `GET /api/workers/{id}/runs`
    case workerRuns(WorkerID)
    /// `GET /api/workers/{id}/runs/{epoch}`
    case workerRun(WorkerID, String)
    /// `GET /api/workers/{id}/runs/{epoch}/logs`
    case workerRunLogs(WorkerID, String)
    /// `POST` or `PUT /api/workers/{id}/records`
    case workerRecords(WorkerID)
    /// `POST /api/workers/{id}/stop`
    case workerStop(WorkerID)
    /// `GET /ws/workers/{id}` with a WebSocket upgrade
    case stream(WorkerID)
    /// `GET /ws/workers/{id}/runs/{epoch}` with a WebSocket upgrade
    case runStream(WorkerID, String)
    /// `GET /ws/streams` with a WebSocket upgrade: many workers on one socket
    case multiplexStream
    /// `GET /api/workers/{id}/events`: the worker's stream as Server-Sent Events
    case workerEvents(WorkerID)
    /// `GET /api/workers/{id}/runs/{epoch}/events`: one run's stream as Server-Sent Events
    case workerRunEvents(WorkerID, String)
    /// `GET /api/streams/events`: many workers' streams as Server-Sent Events
    case streamEvents
    /// Any other path under `/api/`: 404.
    case unknownAPI
    /// A static file of the browser UI (the path as sent, not decoded).
    case file(Substring)

    static let streamPathPrefix = "/ws/workers/"
    static let workersPathPrefix = "/api/workers/"

    /// Reads `path` (base path already stripped, query removed). Throws 400 for a malformed worker id.
    init(path: Substring) throws(GatewayError) {
        // A worker's stream, the most frequent request, first; on bytes (for ASCII, characters are bytes).
        if path.utf8.starts(with: Self.streamPathPrefix.utf8), path.utf8.allSatisfy({ $0 < 0x80 }) {
            self = try Self.streamRoute(path[path.utf8.index(path.startIndex, offsetBy: Self.streamPathPrefix.utf8.count)...])
            return
        }
        switch path {
        case "/healthz": self = .health
        case "/readyz": self = .readiness
        case "/metrics": self = .metrics
        case "/api/workers", "/api/workers/": self = .workerList
        case "/api/stats": self = .statistics
        case "/ws/streams": self = .multiplexStream
        case "/api/streams/events": self = .streamEvents
        default:
            if path.hasPrefix(Self.streamPathPrefix) {
                self = try Self.streamRoute(path.dropFirst(Self.streamPathPrefix.count))
            } else if path.hasPrefix(Self.workersPathPrefix) {
                self = try Self.workerRoute(path.dropFirst(Self.workersPathPrefix.count))
            } else if path.hasPrefix("/api/") {
                self = .unknownAPI
            } else {
                self = .file(path)
            }
        }
    }

    /// `{id}`, `{id}/logs`, `{id}/events`, `{id}/records`, `{id}/stop`, `{id}/runs`, `{id}/runs/{epoch}`,
    /// `{id}/runs/{epoch}/logs`, `{id}/runs/{epoch}/events`.
    private static func workerRoute(_ rest: Substring) throws(GatewayError) -> Route {
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        let id = try workerID(parts[0])
        switch parts.count {
        case 1:
            return .worker(id)
        case 2:
            switch parts[1] {
            case "": return .worker(id)
            case "logs": return .workerLogs(id)
            case "events": return .workerEvents(id)
            case "records": return .workerRecords(id)
            case "stop": return .workerStop(id)
            case "runs": return .workerRuns(id)
            default: return .unknownAPI
            }
        case 3 where parts[1] == "runs":
            return .workerRun(id, try epoch(parts[2]))
        case 4 where parts[1] == "runs" && parts[3] == "logs":
            return .workerRunLogs(id, try epoch(parts[2]))
        case 4 where parts[1] == "runs" && parts[3] == "events":
            return .workerRunEvents(id, try epoch(parts[2]))
        default:
            return .unknownAPI
        }
    }

    /// `{id}` or `{id}/runs/{epoch}`.
    private static func streamRoute(_ rest: Substring) throws(GatewayError) -> Route {
        // No slash byte: one part, whatever the characters.
        if !rest.utf8.contains(UInt8(ascii: "/")) { return .stream(try workerID(rest)) }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        let id = try workerID(parts[0])
        switch parts.count {
        case 1: return .stream(id)
        case 3 where parts[1] == "runs": return .runStream(id, try epoch(parts[2]))
        default: throw GatewayError.badWorkerID(rest)
        }
    }

    private static func epoch(_ text: Substring) throws(GatewayError) -> String {
        guard RunID.isValidEpoch(text) else {
            throw GatewayError(.badRequest, "bad_epoch", "'\(text.prefix(40))' is not the epoch of a run (1 to 32 characters of a-z and 0-9)")
        }
        return String(text)
    }

    private static func workerID(_ text: Substring) throws(GatewayError) -> WorkerID {
        guard let id = WorkerID(text) else { throw GatewayError.badWorkerID(text) }
        return id
    }

    /// The path of a worker's stream, for `log_stream_path`.
    static func streamPath(of id: WorkerID) -> String { streamPathPrefix + id.rawValue }
}
