import NIOHTTP1
import TailgateCore

/// Where a new subscriber starts reading.
enum ReplayStart: Equatable {
    /// Every record after this seq (`?since=`).
    case after(UInt64)
    /// The newest N records (`?tail=`), 0 for live only.
    case tail(Int)
    /// The run's first stored record (a client resumed a run that is not the current one).
    case first

    /// The first seq to give (or gap), given the ring's bounds now.
    func replayFrom(firstSeq: UInt64, lastSeq: UInt64) -> UInt64 {
        switch self {
        case .after(let seq):
            // A seq beyond the newest one (the client saw another incarnation): start live.
            return min(seq, lastSeq) + 1
        case .tail(let count):
            let available = lastSeq + 1 - firstSeq
            return lastSeq + 1 - min(UInt64(count), available)
        case .first:
            return firstSeq
        }
    }
}

extension ReplayStart {
    /// Where a client that asked for `asked` starts in `source` (`since` wins over `tail`, else the
    /// default tail), and whether its `epoch` was resumed: an epoch that is not the source's run starts
    /// at the run's first record, with the reason.
    static func resolving(_ asked: SubscriptionStart, defaultTail: Int, in source: StreamSource) -> (ReplayStart, resumed: (Bool, reason: String?)?) {
        let start: ReplayStart = asked.since.map { .after($0) } ?? .tail(asked.tail ?? defaultTail)
        guard let epoch = asked.epoch else { return (start, nil) }
        if epoch == source.runID.epoch { return (start, (true, nil)) }
        return (.first, (false, "run \(epoch) is not the current run of \(source.workerID) (it is \(source.runID.epoch))"))
    }
}

/// A validated request to open a worker's stream.
struct StreamRequest {
    let source: StreamSource
    let start: ReplayStart
    /// Whether the client's `epoch` was resumed, and why not (`nil`: it gave none).
    let resumed: (Bool, reason: String?)?
    /// Who asked (through a trusted proxy: the real client).
    let client: ClientIdentity
    /// The token it showed, when auth is on: the stream closes with 1008 when it expires.
    let token: AccessToken?
}

/// A stream request that passed every check, with its subscriber place reserved: what to open, and
/// the headers of the `101 Switching Protocols` answer besides the handshake's own.
struct StreamAcceptance {
    let request: StreamRequest
    /// The permessage-deflate parameters agreed, if any.
    let deflate: PerMessageDeflateParameters?
    let responseHeaders: HTTPHeaders
}

/// `GET /ws/workers/{id}`: decides whether a request may open a stream, or which refusal to answer.
///
/// The checks run in a fixed order: parameters (400), method (405), WebSocket handshake (426/400),
/// token (401), `Origin` (403), token scope (403), the worker (404), then the limits (503): clients per
/// address behind a proxy, subscribers per worker.
enum StreamEndpoint {
    static func accept(_ request: Request, id: WorkerID, run epoch: String? = nil, connection: ConnectionState,
                       gateway: GatewayContext) throws(GatewayError) -> StreamAcceptance {
        let stream = try validate(request, id: id, run: epoch, gateway: gateway)
        let limiter = gateway.limiter
        if stream.client.viaTrustedProxy {
            if let refusal = limiter.reserveProxiedClient(stream.client.address) { throw refusal }
            connection.reservedClient = stream.client.address
        }
        if case .worker(let worker) = stream.source {
            if let refusal = limiter.reserveSubscriber(of: worker) { throw refusal }
            connection.reservedWorker = worker
        }
        var headers = HTTPHeaders()
        var deflate: PerMessageDeflateParameters?
        if gateway.configuration.deflateEnabled,
           let parameters = PerMessageDeflateNegotiation.negotiate(request.headers["sec-websocket-extensions"])
        {
            deflate = parameters
            headers.add(name: "Sec-WebSocket-Extensions", value: parameters.responseHeader)
        }
        return StreamAcceptance(request: stream, deflate: deflate, responseHeaders: headers)
    }

    /// Every check but the limits. `epoch`: the run asked for by path (`/ws/workers/{id}/runs/{epoch}`).
    static func validate(_ request: Request, id: WorkerID, run epoch: String? = nil, gateway: GatewayContext) throws(GatewayError) -> StreamRequest {
        let configuration = gateway.configuration
        let target = request.target
        let asked = try subscriptionStart(target)
        guard request.method == .GET else { throw GatewayError.methodNotAllowed("GET") }
        try checkHandshake(request.headers)
        let token = try configuration.access.token(query: target, headers: request.headers)
        let client = request.client(trustedProxies: configuration.trustedProxies)
        try OriginPolicy(allowed: configuration.allowedOrigins).check(request.headers, host: client.host)
        try configuration.access.require(.read, on: id, token: token)
        let source = try Self.source(id: id, run: epoch, gateway: gateway)
        let (start, resumed) = ReplayStart.resolving(asked, defaultTail: configuration.defaultTail, in: source)
        return StreamRequest(source: source, start: start, resumed: resumed, client: client, token: token)
    }

    /// `since`, `tail` and `epoch` of a single worker's stream; 400 when malformed.
    static func subscriptionStart(_ target: RequestTarget) throws(GatewayError) -> SubscriptionStart {
        var asked = SubscriptionStart()
        if let since = try target.unsignedValue("since") {
            asked.since = since
        } else if let tail = try target.unsignedValue("tail", max: 1_000_000_000) {
            asked.tail = Int(tail)
        }
        asked.epoch = target.value("epoch")
        if let epoch = asked.epoch, !RunID.isValidEpoch(epoch) {
            throw .badParameter("epoch", "expected the epoch of a run (1 to 32 characters of a-z and 0-9)")
        }
        return asked
    }

    /// What the stream follows: the worker's live run, else its last stored run; with `epoch`, that run.
    static func source(id: WorkerID, run epoch: String?, gateway: GatewayContext) throws(GatewayError) -> StreamSource {
        let live = gateway.bus.worker(id)
        if let epoch {
            if let live, live.epoch == epoch { return .worker(live) }
            guard let store = gateway.bus.store, let run = store.run(RunID(worker: id, epoch: epoch)) else {
                throw GatewayError.runNotFound(id, epoch)
            }
            return .storedRun(run, store)
        }
        if let live { return .worker(live) }
        if let store = gateway.bus.store, let last = store.runs(of: id).first { return .storedRun(last, store) }
        throw GatewayError.workerNotFound(id)
    }

    /// RFC 6455 §4.2.1: a GET with `Upgrade: websocket`, `Connection: upgrade`, a key and version 13.
    static func checkHandshake(_ headers: HTTPHeaders) throws(GatewayError) {
        let upgrade = headers.lists("websocket", in: "upgrade")
        let connection = headers.lists("upgrade", in: "connection")
        guard upgrade && connection else {
            throw GatewayError(.upgradeRequired, "websocket_upgrade_required",
                               "this path serves a WebSocket stream: send a WebSocket upgrade request",
                               headers: [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        }
        guard headers.first(name: "sec-websocket-version") == "13" else {
            throw GatewayError(.upgradeRequired, "unsupported_websocket_version",
                               "only WebSocket version 13 is supported", headers: [("Sec-WebSocket-Version", "13")])
        }
        guard let key = headers.first(name: "sec-websocket-key"), isNonce(key) else {
            throw GatewayError(.badRequest, "bad_websocket_key", "missing or malformed Sec-WebSocket-Key (16 bytes in base64)")
        }
    }

    /// Whether `key` is 16 bytes in base64 (RFC 6455 §4.1): 22 digits of the base64 alphabet and `==`.
    static func isNonce(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[..<22].allSatisfy { byte in
            (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
                || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/")
        }
    }

    /// The handshake could not be completed after the checks passed (e.g. two `Sec-WebSocket-Key` headers).
    static let handshakeFailed = GatewayError(.badRequest, "bad_websocket_handshake", "the WebSocket handshake could not be completed")
}
