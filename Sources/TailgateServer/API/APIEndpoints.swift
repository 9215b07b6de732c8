import NIOCore
import TailgateCore

/// The read-only REST API: `/healthz`, `/readyz`, `/api/workers`, `/api/workers/{id}`, `/api/workers/{id}/runs`,
/// `/api/workers/{id}/runs/{epoch}`, `/api/stats`.
enum APIEndpoints {
    /// `GET /healthz`: `{"status":"ok"}`.
    static func health(_ request: Request) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        var body = ByteBuffer()
        body.writeStaticString("{\"status\":\"ok\"}\n")
        return .json(body)
    }

    /// `GET /readyz`: `{"status":"ready"}`, or 503 `{"status":"not_ready","reason":…,"message":…}` while
    /// the gateway starts, shuts down, or its store cannot write.
    static func readiness(_ request: Request, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        var body = ByteBuffer()
        guard let notReady = GatewayReadiness.notReadyReason(phase: gateway.readiness.phase, store: gateway.bus.store?.health()) else {
            body.writeStaticString("{\"status\":\"ready\"}\n")
            return .json(body)
        }
        body.writeStaticString("{\"status\":\"not_ready\",\"reason\":")
        body.writeJSONString(notReady.reason)
        body.writeStaticString(",\"message\":")
        body.writeJSONString(notReady.message)
        body.writeStaticString("}\n")
        var response = HTTPResponse.json(body, status: .serviceUnavailable)
        response.refusalCode = "not_ready"
        return response
    }

    /// `GET /api/workers`: every worker the token covers, sorted by id.
    static func workerList(_ request: Request, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        let token = try requireRead(request, on: nil, gateway: gateway)
        var snapshots = gateway.bus.allWorkers().filter { token?.covers($0.id) ?? true }.map { $0.snapshot() }
        // Workers known only from their stored history: their newest run.
        if let store = gateway.bus.store {
            let live = Dictionary(snapshots.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let newest = store.allRuns().filter { run in
                guard token?.covers(run.id.worker) ?? true else { return false }
                guard let local = live[run.id.worker] else { return true }
                return store.isShared && Self.storeIsNewer(run, than: local)
            }.newestPerWorker()
            snapshots.removeAll { newest[$0.id] != nil }
            snapshots += newest.values.map(WorkerSnapshot.init(run:))
            snapshots.sort { $0.id < $1.id }
        }
        return .json(WorkerJSON.list(snapshots, streamBase: streamBase(request, gateway: gateway), pathPrefix: gateway.configuration.basePath))
    }

    /// `GET /api/workers/{id}`.
    static func worker(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try requireRead(request, on: id, gateway: gateway)
        let snapshot: WorkerSnapshot
        let store = gateway.bus.store
        if let worker = gateway.bus.worker(id),
           !(store?.isShared ?? false) || !(store?.runs(of: id).first.map { Self.storeIsNewer($0, than: worker.snapshot()) } ?? false) {
            snapshot = worker.snapshot()
        } else if let last = store?.runs(of: id).first {
            snapshot = WorkerSnapshot(run: last)
        } else {
            throw GatewayError.workerNotFound(id)
        }
        return .json(WorkerJSON.one(snapshot, streamBase: streamBase(request, gateway: gateway), pathPrefix: gateway.configuration.basePath))
    }

    /// Whether a shared store's view of a worker's newest run supersedes this gateway's stopped worker:
    /// a newer run started elsewhere, or the same run goes on through another gateway (this one stopped
    /// writing it when its lease passed on).
    static func storeIsNewer(_ run: RunInfo, than local: WorkerSnapshot) -> Bool {
        guard local.state == .stopped else { return false }
        return run.startedAt > local.startedAt || (run.id.epoch == local.epoch && run.status == .running)
    }

    /// `GET /api/workers/{id}/runs`: the worker's runs, newest first.
    static func runs(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try requireRead(request, on: id, gateway: gateway)
        let runs = knownRuns(of: id, gateway: gateway)
        guard !runs.isEmpty else { throw GatewayError.workerNotFound(id) }
        return .json(RunJSON.list(id, runs: runs, current: runs[0].id.epoch, pathPrefix: gateway.configuration.basePath))
    }

    /// `GET /api/workers/{id}/runs/{epoch}`.
    static func run(_ request: Request, id: WorkerID, epoch: String, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try requireRead(request, on: id, gateway: gateway)
        let runs = knownRuns(of: id, gateway: gateway)
        guard let run = runs.first(where: { $0.id.epoch == epoch }) else { throw GatewayError.runNotFound(id, epoch) }
        return .json(RunJSON.one(run, current: run.id.epoch == runs[0].id.epoch, pathPrefix: gateway.configuration.basePath))
    }

    /// The worker's runs, newest first: the live one as the worker sees it, the others from the store.
    static func knownRuns(of id: WorkerID, gateway: GatewayContext) -> [RunInfo] {
        var runs = gateway.bus.store?.runs(of: id) ?? []
        if let worker = gateway.bus.worker(id), !(gateway.bus.store?.isShared ?? false) || runs.first.map({ !storeIsNewer($0, than: worker.snapshot()) }) ?? true {
            let live = RunInfo(snapshot: worker.snapshot(), storedBytes: runs.first { $0.id.epoch == worker.epoch }?.storedBytes ?? 0)
            runs.removeAll { $0.id.epoch == worker.epoch }
            runs.insert(live, at: 0)
        }
        return runs
    }

    /// `GET /api/stats`: the gateway's counters.
    static func statistics(_ request: Request, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try requireRead(request, on: nil, gateway: gateway)
        return .json(StatisticsJSON.render(gateway))
    }

    /// The request's token, which must allow reading `worker` (every worker when `nil`); `nil` when auth is off.
    @discardableResult
    static func requireRead(_ request: Request, on worker: WorkerID?, gateway: GatewayContext) throws(GatewayError) -> AccessToken? {
        let access = gateway.configuration.access
        let token = try access.token(query: request.target, headers: request.headers)
        try access.require(.read, on: worker, token: token)
        return token
    }

    /// `ws://` (or `wss://` behind a TLS proxy) plus the host the client used, for `log_stream_url`.
    private static func streamBase(_ request: Request, gateway: GatewayContext) -> String {
        request.client(trustedProxies: gateway.configuration.trustedProxies).streamBase(fallbackHost: gateway.listeningHost)
    }
}
