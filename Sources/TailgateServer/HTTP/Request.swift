import NIOHTTP1

/// A request as the endpoint handlers see it: its head, its target split once, its route, and who sent it.
struct Request {
    let head: HTTPRequestHead
    let target: RequestTarget
    let route: Route
    /// The socket's peer address (no port).
    let peer: String

    /// Parses `head`'s target once. Throws 400 for a malformed query or worker id.
    init(head: HTTPRequestHead, peer: String, basePath: String) throws(GatewayError) {
        self.head = head
        self.peer = peer
        target = try RequestTarget(BasePath.strip(head.uri, basePath: basePath))
        route = try Route(path: target.path)
    }

    var method: HTTPMethod { head.method }
    var headers: HTTPHeaders { head.headers }

    /// Throws 405 unless the method is GET or HEAD.
    func requireGET() throws(GatewayError) {
        guard method == .GET || method == .HEAD else { throw GatewayError.methodNotAllowed("GET, HEAD") }
    }

    /// Whether the client asked for an upgrade (after which the HTTP parser stops reading requests).
    var asksForUpgrade: Bool { !head.headers["upgrade"].isEmpty }

    /// Who really sent the request: the peer, or behind a trusted proxy the forwarded client.
    func client(trustedProxies: [AddressRange]) -> ClientIdentity {
        ClientIdentity.resolve(peer: peer, headers: head.headers, trustedProxies: trustedProxies)
    }
}
