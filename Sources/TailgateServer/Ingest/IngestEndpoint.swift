import NIOCore
import NIOHTTP1
import TailgateCore

/// `POST /api/workers/{id}/records` (also `PUT`, which `curl -T` sends) and `POST /api/workers/{id}/stop`:
/// who may publish, into which worker, in which format.
enum IngestEndpoint {
    /// Checks the request and opens the session that publishes its body.
    static func open(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> IngestSession {
        try authorizePublisher(request, id: id, gateway: gateway)
        let format: IngestSession.Format
        let contentType = request.headers.first(name: "content-type")?.lowercased()
            .split(separator: ";").first.map { String($0.trimmingASCIISpaces()) } ?? ""
        switch contentType {
        case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/json":
            format = .ndjson
        case "text/plain", "", "application/octet-stream", "application/x-www-form-urlencoded":
            // curl -T and curl --data-binary send these by default.
            format = .text
        default:
            throw GatewayError(.unsupportedMediaType, "unsupported_media_type",
                               "send application/x-ndjson (one JSON record per line) or text/plain (one line per record)")
        }
        let publisher = try numberedLines(request.headers)
        let worker: Worker
        do {
            worker = try gateway.bus.remoteWorker(id)
        } catch .tooManyWorkers(let limit) {
            throw GatewayError.limitReached("too_many_workers",
                                            "the gateway holds its limit of \(limit) workers, all running (--max-workers); stop one or try later",
                                            retryAfter: gateway.configuration.retryAfterSeconds)
        } catch .publishedElsewhere(_, let holder, let seconds) {
            throw publishedElsewhere(id, holder: holder, retryAfter: seconds)
        } catch {
            throw ownedInProcess(id)
        }
        return IngestSession(worker: worker, format: format, maxLineBytes: gateway.configuration.maxRecordBytes, publisher: publisher,
                             statistics: gateway.statistics)
    }

    /// `Tailgate-Publisher` and `Tailgate-Offset` (exactly-once publishing): the publisher's id and the
    /// offset of the body's first line, `nil` without them. 400 `bad_publisher` when malformed.
    static func numberedLines(_ headers: HTTPHeaders) throws(GatewayError) -> (id: String, firstOffset: UInt64?)? {
        let id = headers.first(name: "tailgate-publisher")
        let offsetText = headers.first(name: "tailgate-offset")
        guard let id else {
            if offsetText != nil { throw badPublisher("Tailgate-Offset needs a Tailgate-Publisher header") }
            return nil
        }
        guard WorkerID(id) != nil else {
            throw badPublisher("Tailgate-Publisher must be 1-128 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
        }
        guard let offsetText else { return (id, nil) }
        guard offsetText.utf8.count <= 16, offsetText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let offset = UInt64(offsetText),
              offset >= 1, offset < 1 << 53
        else {
            throw badPublisher("Tailgate-Offset must be a whole number from 1 to 2^53-1, the offset of the body's first line")
        }
        return (id, offset)
    }

    static func badPublisher(_ message: String) -> GatewayError {
        GatewayError(.badRequest, "bad_publisher", message)
    }

    /// Ends a worker published from another process: its subscribers get `end`, its run is stored as
    /// `stopped`, or with `?exit_code=N` as `succeeded` (0) or `failed`; `?reason=` says why in words.
    static func stop(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        guard request.method == .POST else { throw GatewayError.methodNotAllowed("POST") }
        let target = request.target
        var exitCode: Int?
        if let text = target.value("exit_code") {
            guard let code = Int32(text) else { throw .badParameter("exit_code", "expected a whole number (the program's exit status)") }
            exitCode = Int(code)
        }
        let reason = target.value("reason") ?? exitCode.map { "exited with status \($0)" } ?? Worker.defaultStopReason
        guard !reason.isEmpty, reason.count <= 200 else { throw .badParameter("reason", "expected 1 to 200 characters") }
        try authorizePublisher(request, id: id, gateway: gateway)
        guard let worker = try writerToStop(id, gateway: gateway) else { throw GatewayError.workerNotFound(id) }
        guard worker.owner == .remote else { throw ownedInProcess(id) }
        let status: RunStatus = exitCode.map { $0 == 0 ? .succeeded : .failed } ?? .stopped
        worker.stop(reason: reason, status: status, exitCode: exitCode)
        let ending = worker.ending
        var body = ByteBuffer()
        body.writeStaticString("{\"stopped\":true,\"worker\":")
        body.writeJSONString(id.rawValue)
        body.writeStaticString(",\"epoch\":")
        body.writeJSONString(worker.epoch)
        body.writeStaticString(",\"status\":\"")
        body.writeString(ending.status.rawValue)
        body.writeStaticString("\",\"exit_code\":")
        body.writeJSONIntegerOrNull(ending.exitCode)
        body.writeStaticString("}\n")
        return .json(body)
    }

    /// The worker `POST …/stop` stops: the local one, unless it only mirrors a run another gateway
    /// writes (a store several gateways share): then this gateway takes the run over to end it, or
    /// answers 503 `worker_published_elsewhere` while the other gateway holds its lease (stopping a
    /// mirror here would end the run for this gateway's subscribers only). A running run this gateway
    /// does not follow yet is looked up in the store the same way.
    static func writerToStop(_ id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> Worker? {
        let bus = gateway.bus
        var worker = bus.worker(id)
        guard let store = bus.store, store.isShared, worker == nil || worker!.isMirror || worker!.isStopping else { return worker }
        if worker == nil || worker!.isStopping, let run = store.newestRun(of: id), run.status == .running, run.owner == .remote,
           let mirror = bus.mirror(of: run) {
            worker = mirror
        }
        guard let mirror = worker, mirror.isMirror else { return worker }
        do {
            return try bus.takeOver(mirror)
        } catch .publishedElsewhere(_, let holder, let seconds) {
            throw publishedElsewhere(id, holder: holder, retryAfter: seconds)
        } catch {
            return nil
        }
    }

    /// 503 `worker_published_elsewhere`: another gateway holds the worker's writer lease. Retryable
    /// rather than 409: the holder may be dead, and its lease then expires within `retryAfter` seconds
    /// (docs/REDIS.md); publishers retry a 503 after Retry-After.
    static func publishedElsewhere(_ id: WorkerID, holder: String, retryAfter seconds: Int) -> GatewayError {
        GatewayError(.serviceUnavailable, "worker_published_elsewhere",
                     "worker '\(id)' is published through another gateway (\(holder)), which holds its writer lease; publish there, or again after Retry-After if that gateway is gone",
                     headers: [("Retry-After", String(seconds))])
    }

    /// Who may publish into (or stop) `id`: a client on a `--publish-from` address — behind a trusted
    /// proxy the forwarded client, so that relayed requests never count as local — and, with auth on,
    /// anyone showing a token of publish scope covering the worker (401 without one). A client on an
    /// allowed address that shows no credentials needs none.
    static func authorizePublisher(_ request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) {
        let configuration = gateway.configuration
        let identity = request.client(trustedProxies: configuration.trustedProxies)
        try refuseCrossSite(request, identity: identity, configuration: configuration)
        let client = identity.address
        let fromAllowedAddress = configuration.publishFrom.contains { $0.contains(client) }
        let hasCredentials = request.target.value("access_token") != nil || request.headers.first(name: "authorization") != nil
        if configuration.access.isEnabled && (hasCredentials || !fromAllowedAddress) {
            let token = try configuration.access.token(query: request.target, headers: request.headers)
            try configuration.access.require(.publish, on: id, token: token)
            return
        }
        guard fromAllowedAddress else {
            let how = configuration.access.isEnabled ? " or show a token with publish scope" : ""
            throw GatewayError(.forbidden, "publish_not_allowed",
                               "\(client) may not publish; allowed: \(configuration.publishFrom.map(\.description).joined(separator: ", ")) (--publish-from)\(how)")
        }
    }

    /// Refuses a state-changing request sent by a web page of another site: a browser says where a
    /// request comes from (`Sec-Fetch-Site`, `Origin`); any page the user visits could otherwise POST
    /// fake records into a gateway on the user's machine (a CORS "simple request" needs no preflight).
    /// Programs (`curl`, `tailgate run`, the Python handler) send neither header and are not affected.
    static func refuseCrossSite(_ request: Request, identity: ClientIdentity, configuration: ServerConfiguration) throws(GatewayError) {
        if let site = request.headers.first(name: "sec-fetch-site")?.lowercased(), site != "same-origin", site != "none",
           !configuration.allowedOrigins.contains("*")
        {
            guard let origin = request.headers.first(name: "origin"),
                  configuration.allowedOrigins.contains(where: { $0.lowercased() == origin.lowercased() })
            else {
                throw GatewayError(.forbidden, "cross_site_request",
                                   "a web page of another site (Sec-Fetch-Site: \(site.prefix(20))) may not publish or stop workers; use --allowed-origin to allow its origin")
            }
        }
        try OriginPolicy(allowed: configuration.allowedOrigins).check(request.headers, host: identity.host)
    }

    static func ownedInProcess(_ id: WorkerID) -> GatewayError {
        GatewayError(.conflict, "worker_owned_in_process", "worker '\(id)' is published by the gateway's own process; pick another id")
    }
}
