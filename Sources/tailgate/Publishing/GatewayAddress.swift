/// Where the gateway listens, from `--gateway http://HOST[:PORT][/PREFIX]`.
struct GatewayAddress: Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    /// A path prefix, for a gateway behind a proxy at a sub-path (no trailing slash; empty for none).
    var pathPrefix: String

    /// Reads `http://127.0.0.1:8080`, `http://[::1]:9000/tailgate`, `localhost` (http assumed).
    init?(_ text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
        } else if rest.contains("://") {
            return nil  // https and others: not spoken here
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash]
        var prefix = String(rest[slash...])
        while prefix.hasSuffix("/") { prefix.removeLast() }
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()) else { return nil }
                port = number
            }
        } else {
            if let colon = authority.lastIndex(of: ":") {
                guard let number = Int(authority[authority.index(after: colon)...]) else { return nil }
                port = number
                authority = authority[..<colon]
            }
            host = String(authority)
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.port = port
        self.pathPrefix = prefix
    }

    /// The `Host` header value.
    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? name : "\(name):\(port)"
    }

    var description: String { "http://\(hostHeader)\(pathPrefix)" }
}
