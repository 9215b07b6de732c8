/// Which names a request's `Host` may give: the defence against DNS rebinding, where a web page on a
/// domain re-pointed to this machine's address is same-origin with itself and could read every log.
///
/// Allowed: IP literals (a rebinding page's `Host` is always its domain name, never an address),
/// `localhost` and `*.localhost`, the name the gateway listens on, the names given with
/// `--allowed-host` (`*` allows any), and everything a trusted proxy relays (its own `server_name`
/// chose it). A request without `Host` (HTTP/1.0) is allowed.
struct HostPolicy {
    let allowed: [String]
    let listenHost: String

    init(allowed: [String], listenHost: String) {
        self.allowed = allowed.map { Self.name(of: $0) }
        self.listenHost = Self.name(of: listenHost)
    }

    func check(_ request: Request, trustedProxies: [AddressRange]) throws(GatewayError) {
        guard let host = request.headers.first(name: "host"), !allowed.contains("*") else { return }
        if trustedProxies.contains(where: { $0.contains(request.peer) }) { return }
        let name = Self.name(of: host)
        if name.isEmpty || Self.isAddressLiteral(name) || name == "localhost" || name.hasSuffix(".localhost")
            || name == listenHost || allowed.contains(name)
        {
            return
        }
        throw GatewayError(.forbidden, "host_not_allowed",
                           "Host '\(host.prefix(100))' is not a name this gateway answers to; start it with --allowed-host \(name.prefix(100))")
    }

    /// The host name of a `Host` value or a configured name: lowercased, without port or final dot.
    static func name(of host: String) -> String {
        var text = Substring(host.lowercased())
        if text.hasPrefix("[") {
            if let end = text.firstIndex(of: "]") { return String(text[...end]) }
            return String(text)
        }
        if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon { text = text[..<colon] }
        if text.hasSuffix(".") { text = text.dropLast() }
        return String(text)
    }

    /// `192.0.2.7`, `[::1]` or a bare IPv6 address.
    static func isAddressLiteral(_ name: String) -> Bool {
        if name.hasPrefix("[") && name.hasSuffix("]") { return AddressRange(String(name.dropFirst().dropLast())) != nil }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) && Int($0)! <= 255 }) { return true }
        return name.contains(":") && AddressRange(name) != nil
    }
}
