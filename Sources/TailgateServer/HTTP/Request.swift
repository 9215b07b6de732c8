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
        target = try RequestTarget(BasePath.strip(Self.originForm(head.uri), basePath: basePath))
        route = try Route(path: target.path)
    }

    /// The path and query of a target: an absolute-form target (`http://host/path?q`, RFC 9112 §3.2.2,
    /// as proxies send) is served as its path.
    static func originForm(_ uri: String) -> String {
        // Origin-form, the usual case: no scheme to look for.
        if uri.utf8.first == UInt8(ascii: "/") { return uri }
        let scheme = uri.utf8.prefix(8).map { $0 | 0x20 }
        let schemeLength: Int
        if scheme.starts(with: Array("http://".utf8)) {
            schemeLength = 7
        } else if scheme.starts(with: Array("https://".utf8)) {
            schemeLength = 8
        } else {
            return uri
        }
        let rest = uri.dropFirst(schemeLength)
        guard let start = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[start] == "?" ? "/" + rest[start...] : String(rest[start...])
    }

    var method: HTTPMethod { head.method }
    var headers: HTTPHeaders { head.headers }

    /// Throws 405 unless the method is GET or HEAD.
    func requireGET() throws(GatewayError) {
        guard method == .GET || method == .HEAD else { throw GatewayError.methodNotAllowed("GET, HEAD") }
    }

    /// Who really sent the request: the peer, or behind a trusted proxy the forwarded client.
    func client(trustedProxies: [AddressRange]) -> ClientIdentity {
        ClientIdentity.resolve(peer: peer, headers: head.headers, trustedProxies: trustedProxies)
    }
}
