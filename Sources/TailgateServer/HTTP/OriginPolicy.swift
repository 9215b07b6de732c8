import NIOHTTP1

/// The `Origin` check: allowed when absent, when its host equals the request's host, or when listed.
struct OriginPolicy {
    let allowed: [String]

    func check(_ headers: HTTPHeaders, host: String? = nil) throws(GatewayError) {
        let origins = headers["origin"]
        guard origins.count <= 1 else {
            throw GatewayError(.badRequest, "bad_origin", "a request carries at most one Origin header, not \(origins.count)")
        }
        guard let origin = origins.first else { return }
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
