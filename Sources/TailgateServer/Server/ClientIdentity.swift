import NIOHTTP1

/// Who a request really comes from, and which scheme and host it used: the socket's peer, or — only
/// when that peer is a trusted proxy (`--trusted-proxy`) — what `X-Forwarded-For`, `-Proto` and
/// `-Host` say. From anyone else those headers are ignored.
struct ClientIdentity: Equatable {
    /// The client's address (for per-address limits).
    var address: String
    /// `https` when the client reached the proxy over TLS, else `http`.
    var scheme: String
    /// The host the client asked for (`X-Forwarded-Host`, else `Host`).
    var host: String?
    /// Whether the socket's peer is a trusted proxy.
    var viaTrustedProxy: Bool

    static func resolve(peer: String, headers: HTTPHeaders, trustedProxies: [AddressRange]) -> ClientIdentity {
        let host = headers.first(name: "host")
        guard trustedProxies.contains(where: { $0.contains(peer) }) else {
            return ClientIdentity(address: peer, scheme: "http", host: host, viaTrustedProxy: false)
        }
        var identity = ClientIdentity(address: peer, scheme: "http", host: host, viaTrustedProxy: true)
        // The rightmost address that is not one of our proxies is the client.
        let hops = headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { $0.trimmingASCIISpaces() }
        for hop in hops.reversed() {
            let address = String(hop)
            guard AddressRange(address) != nil else { break }
            identity.address = address
            if !trustedProxies.contains(where: { $0.contains(address) }) { break }
        }
        if let proto = headers.first(name: "x-forwarded-proto")?.split(separator: ",").first?.trimmingASCIISpaces().lowercased(),
           proto == "https" || proto == "http"
        {
            identity.scheme = proto
        }
        if let forwardedHost = headers.first(name: "x-forwarded-host")?.split(separator: ",").first?.trimmingASCIISpaces(),
           !forwardedHost.isEmpty
        {
            identity.host = String(forwardedHost)
        }
        return identity
    }

    /// `ws://host` or `wss://host` for stream URLs.
    func streamBase(fallbackHost: String) -> String {
        (scheme == "https" ? "wss://" : "ws://") + (host.flatMap { $0.isEmpty ? nil : $0 } ?? fallbackHost)
    }
}
