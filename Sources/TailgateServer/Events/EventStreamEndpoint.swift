import NIOHTTP1
import TailgateCore

/// A Server-Sent Events request that passed every check, with its places reserved.
struct EventStreamAcceptance {
    /// What the response streams.
    enum Subscriptions {
        /// One worker's stream (`/api/workers/{id}/events`, `/api/workers/{id}/runs/{epoch}/events`).
        case worker(StreamSource, start: ReplayStart, resumed: (Bool, reason: String?)?)
        /// The workers of a subscription list (`/api/streams/events`).
        case list(SubscriptionList)
    }

    let subscriptions: Subscriptions
    let client: ClientIdentity
    /// The token it showed, when auth is on: the response ends when it expires.
    let token: AccessToken?
}

/// `GET /api/workers/{id}/events`, `GET /api/workers/{id}/runs/{epoch}/events` and
/// `GET /api/streams/events`: decides whether a request may open a Server-Sent Events response, or
/// which JSON refusal of the API to answer.
///
/// The checks run in the order of the streams, without the WebSocket handshake and without the
/// `Origin` check (browsers apply CORS to `EventSource`, as to the rest of the API): parameters (400),
/// method (405), token (401), token scope (403), the worker (404), then the limits (503).
enum EventStreamEndpoint {
    /// One worker's events; `epoch`: the run asked for by path. A `Last-Event-ID` header (`EPOCH:SEQ`,
    /// as the events' `id:` carries it, resumes like `epoch=EPOCH&since=SEQ`; a plain `SEQ` like
    /// `since`) wins over the query.
    static func acceptWorker(_ request: Request, id: WorkerID, run epoch: String?, connection: ConnectionState,
                             gateway: GatewayContext) throws(GatewayError) -> EventStreamAcceptance {
        let configuration = gateway.configuration
        var asked = try StreamEndpoint.subscriptionStart(request.target)
        if let lastEventID = request.headers.first(name: "last-event-id") {
            guard let (lastEpoch, seq) = lastEventIDValue(lastEventID) else {
                throw GatewayError.badParameter("Last-Event-ID", "expected EPOCH:SEQ (the id of an event) or a seq, got '\(lastEventID.prefix(40))'")
            }
            asked.since = seq
            if let lastEpoch { asked.epoch = lastEpoch }
        }
        guard request.method == .GET else { throw GatewayError.methodNotAllowed("GET") }
        let token = try configuration.access.token(query: request.target, headers: request.headers)
        try configuration.access.require(.read, on: id, token: token)
        let source = try StreamEndpoint.source(id: id, run: epoch, gateway: gateway)
        let (start, resumed) = ReplayStart.resolving(asked, defaultTail: configuration.defaultTail, in: source)
        let client = try reserveClient(request, connection: connection, gateway: gateway)
        if case .worker(let worker) = source {
            if let refusal = gateway.limiter.reserveSubscriber(of: worker) {
                // The refused connection may be kept alive: it must not hold the client's place.
                if let reserved = connection.reservedClient {
                    gateway.limiter.releaseProxiedClient(reserved)
                    connection.reservedClient = nil
                }
                throw refusal
            }
            connection.reservedWorker = worker
        }
        return EventStreamAcceptance(subscriptions: .worker(source, start: start, resumed: resumed), client: client, token: token)
    }

    /// `EPOCH:SEQ` (the epoch and the seq), or `SEQ` (no epoch); `nil` for anything else.
    static func lastEventIDValue(_ text: String) -> (epoch: String?, seq: UInt64)? {
        let utf8 = text.utf8
        var epoch: String?
        var seqText = Substring(text)
        if let colon = utf8.firstIndex(of: UInt8(ascii: ":")) {
            let epochText = Substring(text[..<colon])
            guard RunID.isValidEpoch(epochText) else { return nil }
            epoch = String(epochText)
            seqText = text[text.index(after: colon)...]
        }
        guard !seqText.isEmpty, seqText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let seq = UInt64(seqText), seq <= UInt64(Int64.max)
        else { return nil }
        return (epoch, seq)
    }

    /// The events of the workers of the query's subscription list.
    static func acceptList(_ request: Request, connection: ConnectionState, gateway: GatewayContext) throws(GatewayError) -> EventStreamAcceptance {
        let configuration = gateway.configuration
        let subscriptions = try SubscriptionList(request.target)
        guard request.method == .GET else { throw GatewayError.methodNotAllowed("GET") }
        let token = try configuration.access.token(query: request.target, headers: request.headers)
        try configuration.access.require(.read, on: nil, token: token)
        let client = try reserveClient(request, connection: connection, gateway: gateway)
        return EventStreamAcceptance(subscriptions: .list(subscriptions), client: client, token: token)
    }

    /// The client; behind a trusted proxy its place among the real client's streams is taken.
    private static func reserveClient(_ request: Request, connection: ConnectionState, gateway: GatewayContext) throws(GatewayError) -> ClientIdentity {
        let client = request.client(trustedProxies: gateway.configuration.trustedProxies)
        if client.viaTrustedProxy {
            if let refusal = gateway.limiter.reserveProxiedClient(client.address) { throw refusal }
            connection.reservedClient = client.address
        }
        return client
    }
}
