import NIOHTTP1
import TailgateCore

/// `POST /api/workers/{id}/records` (also `PUT`, which `curl -T` sends): who may publish, into which
/// worker, in which format.
enum IngestRoute {
    static func matches(_ head: HTTPRequestHead, basePath: String) -> Bool {
        guard head.method == .POST || head.method == .PUT else { return false }
        let path = BasePath.strip(head.uri, basePath: basePath).split(separator: "?", maxSplits: 1)[0]
        return path.hasPrefix("/api/workers/") && path.hasSuffix("/records")
    }

    /// Checks the request and opens the session that publishes its body.
    static func open(_ head: HTTPRequestHead, peer: String, gateway: GatewayContext) throws(GatewayError) -> IngestSession {
        let target = try RequestTarget(BasePath.strip(head.uri, basePath: gateway.configuration.basePath))
        let idText = target.path.dropFirst("/api/workers/".count).dropLast("/records".count)
        guard let id = WorkerID(idText) else { throw GatewayError.badWorkerID(idText) }
        try authorizePublisher(head, target: target, peer: peer, id: id, gateway: gateway)
        let format: IngestSession.Format
        let contentType = head.headers.first(name: "content-type")?.lowercased()
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
        let worker: Worker
        do {
            worker = try gateway.bus.remoteWorker(id)
        } catch {
            throw ownedInProcess(id)
        }
        return IngestSession(worker: worker, format: format, maxLineBytes: gateway.configuration.maxRecordBytes)
    }

    /// Who may publish into (or stop) `id`: a client on a `--publish-from` address — behind a trusted
    /// proxy the forwarded client, so that relayed requests never count as local — and, with auth on,
    /// anyone showing a token of publish scope covering the worker (401 without one). A client on an
    /// allowed address that shows no credentials needs none.
    static func authorizePublisher(_ head: HTTPRequestHead, target: RequestTarget, peer: String, id: WorkerID,
                                   gateway: GatewayContext) throws(GatewayError) {
        let configuration = gateway.configuration
        let client = ClientIdentity.resolve(peer: peer, headers: head.headers, trustedProxies: configuration.trustedProxies).address
        let fromAllowedAddress = configuration.publishFrom.contains { $0.contains(client) }
        let hasCredentials = target.value("access_token") != nil || head.headers.first(name: "authorization") != nil
        if configuration.access.isEnabled && (hasCredentials || !fromAllowedAddress) {
            let token = try configuration.access.token(query: target, headers: head.headers)
            try configuration.access.require(.publish, on: id, token: token)
            return
        }
        guard fromAllowedAddress else {
            let how = configuration.access.isEnabled ? " or show a token with publish scope" : ""
            throw GatewayError(.forbidden, "publish_not_allowed",
                               "\(client) may not publish; allowed: \(configuration.publishFrom.map(\.description).joined(separator: ", ")) (--publish-from)\(how)")
        }
    }

    static func ownedInProcess(_ id: WorkerID) -> GatewayError {
        GatewayError(.conflict, "worker_owned_in_process", "worker '\(id)' is published by the gateway's own process; pick another id")
    }
}
