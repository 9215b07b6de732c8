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
        let client = publisherAddress(peer: peer, head: head, gateway: gateway)
        let fromAllowedAddress = gateway.configuration.publishFrom.contains { $0.contains(client) }
        let hasCredentials = target.value("access_token") != nil || head.headers.first(name: "authorization") != nil
        let token = fromAllowedAddress && !hasCredentials ? nil : try gateway.configuration.access.token(query: target, headers: head.headers)
        try checkPublisher(client, id: id, token: token, gateway: gateway)
        let format: IngestSession.Format
        let contentType = head.headers.first(name: "content-type")?.lowercased()
            .split(separator: ";").first.map { $0.trimmingCharacters(in: " ") } ?? ""
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

    /// The address `--publish-from` is checked against: the socket's peer, or behind a trusted proxy
    /// the forwarded client (so that relayed requests never count as local publishers).
    static func publisherAddress(peer: String, head: HTTPRequestHead, gateway: GatewayContext) -> String {
        ClientIdentity.resolve(peer: peer, headers: head.headers, trustedProxies: gateway.configuration.trustedProxies).address
    }

    /// Publishing is allowed from `--publish-from` addresses, and, with auth on, with a token of
    /// publish scope covering the worker.
    static func checkPublisher(_ peer: String, id: WorkerID, token: AccessToken?, gateway: GatewayContext) throws(GatewayError) {
        let access = gateway.configuration.access
        if let token, access.isEnabled {
            try access.require(.publish, on: id, token: token)
            return
        }
        guard gateway.configuration.publishFrom.contains(where: { $0.contains(peer) }) else {
            let how = access.isEnabled ? " or show a token with publish scope" : ""
            throw GatewayError(.forbidden, "publish_not_allowed",
                               "\(peer) may not publish; allowed: \(gateway.configuration.publishFrom.map(\.description).joined(separator: ", ")) (--publish-from)\(how)")
        }
    }

    static func ownedInProcess(_ id: WorkerID) -> GatewayError {
        GatewayError(.conflict, "worker_owned_in_process", "worker '\(id)' is published by the gateway's own process; pick another id")
    }
}

private extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var text = self
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return String(text)
    }
}
