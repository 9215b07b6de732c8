import NIOCore
import TailgateCore

/// The read-only REST API: `/healthz`, `/api/workers`, `/api/workers/{id}`, `/api/stats`.
enum APIEndpoints {
    /// `GET /healthz`: `{"status":"ok"}`.
    static func health(_ request: Request) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        var body = ByteBuffer()
        body.writeStaticString("{\"status\":\"ok\"}\n")
        return .json(body)
    }

    /// `GET /api/workers`: every worker the token covers, sorted by id.
    static func workerList(_ request: Request, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        let token = try requireRead(request, on: nil, gateway: gateway)
        let snapshots = gateway.bus.allWorkers().filter { token?.covers($0.id) ?? true }.map { $0.snapshot() }
        return .json(WorkerJSON.list(snapshots, streamBase: streamBase(request, gateway: gateway), pathPrefix: gateway.configuration.basePath))
    }

    /// `GET /api/workers/{id}`.
    static func worker(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try requireRead(request, on: id, gateway: gateway)
        guard let worker = gateway.bus.worker(id) else { throw GatewayError.workerNotFound(id) }
        return .json(WorkerJSON.one(worker.snapshot(), streamBase: streamBase(request, gateway: gateway), pathPrefix: gateway.configuration.basePath))
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
