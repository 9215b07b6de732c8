import NIOHTTP1
import TailgateCore

/// A `/ws/streams` request that passed every check, with its client's place reserved.
struct MultiplexAcceptance {
    /// The subscriptions of the query, made when the socket opens.
    let subscriptions: SubscriptionList
    let client: ClientIdentity
    /// The token it showed, when auth is on: it decides which workers may be subscribed, and the
    /// socket closes with 1008 when it expires.
    let token: AccessToken?
    /// The permessage-deflate parameters agreed, if any.
    let deflate: PerMessageDeflateParameters?
    /// Headers of the `101` answer besides the handshake's own.
    let responseHeaders: HTTPHeaders
}

/// `GET /ws/streams`: decides whether a request may open a socket of many workers' streams, or which
/// refusal to answer.
///
/// The checks run in the order of `/ws/workers/{id}`: parameters (400), method (405), WebSocket
/// handshake (426/400), token (401), `Origin` (403), token scope (403), then the per-address limit
/// behind a proxy (503). Workers are not checked here: a worker that cannot be subscribed gets an
/// `error` message on the open socket.
enum MultiplexEndpoint {
    static func accept(_ request: Request, connection: ConnectionState, gateway: GatewayContext) throws(GatewayError) -> MultiplexAcceptance {
        let configuration = gateway.configuration
        let subscriptions = try SubscriptionList(request.target)
        guard request.method == .GET else { throw GatewayError.methodNotAllowed("GET") }
        try StreamEndpoint.checkHandshake(request.headers)
        let token = try configuration.access.token(query: request.target, headers: request.headers)
        let client = request.client(trustedProxies: configuration.trustedProxies)
        try OriginPolicy(allowed: configuration.allowedOrigins).check(request.headers, host: client.host)
        try configuration.access.require(.read, on: nil, token: token)
        if client.viaTrustedProxy {
            if let refusal = gateway.limiter.reserveProxiedClient(client.address) { throw refusal }
            connection.reservedClient = client.address
        }
        var headers = HTTPHeaders()
        var deflate: PerMessageDeflateParameters?
        if configuration.deflateEnabled,
           let parameters = PerMessageDeflateNegotiation.negotiate(request.headers["sec-websocket-extensions"])
        {
            deflate = parameters
            headers.add(name: "Sec-WebSocket-Extensions", value: parameters.responseHeader)
        }
        return MultiplexAcceptance(subscriptions: subscriptions, client: client, token: token, deflate: deflate, responseHeaders: headers)
    }
}
