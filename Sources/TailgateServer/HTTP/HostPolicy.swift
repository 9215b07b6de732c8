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
        let lowered = host.lowercased()
        if lowered.utf8.allSatisfy({ $0 < 0x80 }) {
            // The same steps on bytes (for ASCII, characters are bytes).
            var bytes = Substring(lowered).utf8
            if bytes.first == UInt8(ascii: "[") {
                if let end = bytes.firstIndex(of: UInt8(ascii: "]")) { return String(Substring(bytes[...end])) }
                return lowered
            }
            if let colon = bytes.lastIndex(of: UInt8(ascii: ":")), bytes.firstIndex(of: UInt8(ascii: ":")) == colon {
                bytes = bytes[..<colon]
            }
            if bytes.last == UInt8(ascii: ".") { bytes = bytes.dropLast() }
            return String(Substring(bytes))
        }
        var text = Substring(lowered)
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
        if isDottedQuad(name) { return true }
        return name.utf8.contains(UInt8(ascii: ":")) && AddressRange(name) != nil
    }

    /// Four numbers of 1 to 3 ASCII digits, each at most 255, separated by dots. (Only ASCII digits: a
    /// `Host` of other Unicode numbers, such as `½.1.1.1`, is a name, not an address.)
    static func isDottedQuad(_ name: String) -> Bool {
        var dots = 0, digits = 0, value = 0
        for byte in name.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, value <= 255 else { return false }
                dots += 1
                digits = 0
                value = 0
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                digits += 1
                guard digits <= 3 else { return false }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            } else {
                return false
            }
        }
        return dots == 3 && digits > 0 && value <= 255
    }
}
