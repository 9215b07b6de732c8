import NIOHTTP1
import TailgateCore

/// Where a new subscriber starts reading.
enum ReplayStart: Equatable {
    /// Every record after this seq (`?since=`).
    case after(UInt64)
    /// The newest N records (`?tail=`), 0 for live only.
    case tail(Int)

    /// The first seq to give (or gap), given the ring's bounds now.
    func replayFrom(firstSeq: UInt64, lastSeq: UInt64) -> UInt64 {
        switch self {
        case .after(let seq):
            // A seq beyond the newest one (the client saw another incarnation): start live.
            return min(seq, lastSeq) + 1
        case .tail(let count):
            let available = lastSeq + 1 - firstSeq
            return lastSeq + 1 - min(UInt64(count), available)
        }
    }
}

/// A validated request to open a worker's stream.
struct StreamRequest {
    let worker: Worker
    let start: ReplayStart
    /// Who asked (through a trusted proxy: the real client).
    let client: ClientIdentity
    /// The token it showed, when auth is on: the stream closes with 1008 when it expires.
    let token: AccessToken?
}

/// Checks a request for `/ws/workers/{id}` and says what to open, or which refusal to answer.
///
/// The checks run in a fixed order: path and parameters (400), WebSocket handshake (426/400),
/// token (401), `Origin` (403), token scope (403), the worker (404). Limits (503) are checked by the caller.
struct StreamRequestValidator {
    let configuration: ServerConfiguration
    let bus: LogBus

    static let pathPrefix = "/ws/workers/"

    /// The worker id in a stream path, or `nil` when the path is not a stream path at all.
    static func workerIDText(inPath path: Substring) -> Substring? {
        guard path.hasPrefix(pathPrefix) else { return nil }
        return path.dropFirst(pathPrefix.count)
    }

    func validate(_ head: HTTPRequestHead, peer: String) throws(GatewayError) -> StreamRequest {
        let target = try RequestTarget(BasePath.strip(head.uri, basePath: configuration.basePath))
        guard let idText = Self.workerIDText(inPath: target.path) else { throw GatewayError.notFound }
        guard let id = WorkerID(idText) else { throw GatewayError.badWorkerID(idText) }
        let start: ReplayStart
        if let since = try target.unsignedValue("since") {
            start = .after(since)
        } else if let tail = try target.unsignedValue("tail", max: 1_000_000_000) {
            start = .tail(Int(tail))
        } else {
            start = .tail(configuration.defaultTail)
        }
        guard head.method == .GET else { throw GatewayError.methodNotAllowed("GET") }
        try Self.checkHandshake(head.headers)
        let token = try configuration.access.token(query: target, headers: head.headers)
        let client = ClientIdentity.resolve(peer: peer, headers: head.headers, trustedProxies: configuration.trustedProxies)
        try OriginPolicy(allowed: configuration.allowedOrigins).check(head.headers, host: client.host)
        try configuration.access.require(.read, on: id, token: token)
        guard let worker = bus.worker(id) else { throw GatewayError.workerNotFound(id) }
        return StreamRequest(worker: worker, start: start, client: client, token: token)
    }

    /// RFC 6455 §4.2.1: a GET with `Upgrade: websocket`, `Connection: upgrade`, a key and version 13.
    static func checkHandshake(_ headers: HTTPHeaders) throws(GatewayError) {
        let upgrade = headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
        let connection = headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
        guard upgrade && connection else {
            throw GatewayError(.upgradeRequired, "websocket_upgrade_required",
                               "this path serves a WebSocket stream: send a WebSocket upgrade request",
                               headers: [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        }
        guard headers.first(name: "sec-websocket-version") == "13" else {
            throw GatewayError(.upgradeRequired, "unsupported_websocket_version",
                               "only WebSocket version 13 is supported", headers: [("Sec-WebSocket-Version", "13")])
        }
        guard let key = headers.first(name: "sec-websocket-key"), key.utf8.count == 24 else {
            throw GatewayError(.badRequest, "bad_websocket_key", "missing or malformed Sec-WebSocket-Key")
        }
    }
}

/// The `Origin` check: allowed when absent, when its host equals the request's host, or when listed.
struct OriginPolicy {
    let allowed: [String]

    func check(_ headers: HTTPHeaders, host: String? = nil) throws(GatewayError) {
        guard let origin = headers.first(name: "origin") else { return }
        if allowed.contains("*") || allowed.contains(where: { $0.lowercased() == origin.lowercased() }) { return }
        let requestHost = host ?? headers.first(name: "host") ?? ""
        if let originHost = Self.hostAndPort(ofOrigin: origin), originHost == Self.normalize(host: requestHost) { return }
        throw GatewayError(.forbidden, "origin_not_allowed",
                           "origin '\(origin.prefix(200))' is not allowed; use --allowed-origin to allow it")
    }

    static func hostAndPort(ofOrigin origin: String) -> String? {
        let lowered = origin.lowercased()
        for (scheme, port) in [("http://", ":80"), ("https://", ":443")] where lowered.hasPrefix(scheme) {
            var rest = String(lowered.dropFirst(scheme.count))
            if rest.hasSuffix("/") { rest.removeLast() }
            if rest.hasSuffix(port) { rest.removeLast(port.count) }
            return rest
        }
        return nil
    }

    static func normalize(host: String) -> String {
        var host = host.lowercased()
        for port in [":80", ":443"] where host.hasSuffix(port) { host.removeLast(port.count) }
        return host
    }
}

/// The prefix the gateway is published under (`--base-path`): stripped from requests that carry it.
enum BasePath {
    static func strip(_ uri: String, basePath: String) -> String {
        guard !basePath.isEmpty, uri.hasPrefix(basePath) else { return uri }
        let rest = uri.dropFirst(basePath.count)
        if rest.isEmpty { return "/" }
        guard rest.first == "/" || rest.first == "?" else { return uri }
        return rest.first == "?" ? "/" + rest : String(rest)
    }
}
