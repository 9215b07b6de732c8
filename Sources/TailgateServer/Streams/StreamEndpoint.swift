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
    /// With a store several gateways share, a run another gateway writes is served by a local mirror
    /// of it (`LogBus.mirror(of:)`), and a worker stopped here is looked up in the store again first (its
    /// run may go on elsewhere, or a newer one may have started).
    static func source(id: WorkerID, run epoch: String?, gateway: GatewayContext) throws(GatewayError) -> StreamSource {
        let bus = gateway.bus
        let shared = bus.store?.isShared ?? false
        let live = bus.worker(id).flatMap { worker in !shared || !worker.isStopping ? worker : nil }
        if let live, epoch == nil || live.epoch == epoch { return .worker(live) }
        guard let store = bus.store else {
            if let epoch { throw GatewayError.runNotFound(id, epoch) }
            throw GatewayError.workerNotFound(id)
        }
        var run = epoch.map { store.run(RunID(worker: id, epoch: $0)) } ?? store.runs(of: id).first
        if shared, run == nil || run!.status == .running || epoch == nil, let newest = store.newestRun(of: id), epoch == nil || newest.id.epoch == epoch {
            run = newest
        }
        guard let run else {
            if let epoch { throw GatewayError.runNotFound(id, epoch) }
            // A worker stopped here and not in the store (its history failed to be written).
            if let stopped = bus.worker(id) { return .worker(stopped) }
            throw GatewayError.workerNotFound(id)
        }
        if run.status == .running, store.isShared {
            if let mirror = bus.mirror(of: run), mirror.epoch == run.id.epoch { return .worker(mirror) }
            // This gateway still follows the worker's previous run, which ended a moment ago (its mirror
            // gets the end within half a second): asking again then finds the new run.
            if let previous = bus.worker(id), previous.isMirror, !previous.isStopping {
                throw GatewayError(.serviceUnavailable, "run_starting",
                                   "worker '\(id)' started a new run a moment ago; try again in a second",
                                   headers: [("Retry-After", "1")])
            }
        }
        if let stopped = bus.worker(id), stopped.epoch == run.id.epoch { return .worker(stopped) }
        return .storedRun(run, store)
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
