/// Where the gateway listens, from `--gateway http[s]://HOST[:PORT][/PREFIX]`.
struct GatewayAddress: Sendable, CustomStringConvertible {
    /// Whether it is spoken to over TLS (`https://`).
    var isSecure: Bool
    var host: String
    var port: Int
    /// A path prefix, for a gateway behind a proxy at a sub-path (no trailing slash; empty for none).
    var pathPrefix: String
    /// `user:password` given in the address (`https://ops:secret@logs.example.com/`), percent-decoded:
    /// credentials for a proxy's basic auth. Never part of `description`.
    var userInfo: String?

    /// Reads `http://127.0.0.1:8080`, `https://logs.example.com/tailgate`, `http://[::1]:9000`,
    /// `https://ops:secret@logs.example.com/tailgate`, `localhost:8080` (http assumed). The default
    /// port is 80 for http, 443 for https.
    init?(_ text: String) {
        var rest = Substring(text)
        if rest.lowercased().hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
            isSecure = false
        } else if rest.lowercased().hasPrefix("https://") {
            rest = rest.dropFirst("https://".count)
            isSecure = true
        } else if rest.contains("://") {
            return nil  // ws://, ftp:// and others: not spoken here
        } else {
            isSecure = false
        }
        let end = rest.firstIndex { $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard end == rest.endIndex else { return nil }  // no query or fragment: the paths are tailgate's
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash]
        if let at = authority.lastIndex(of: "@") {
            guard let decoded = Self.percentDecoded(authority[..<at]) else { return nil }
            userInfo = decoded
            authority = authority[authority.index(after: at)...]
        }
        var prefix = String(rest[slash...])
        while prefix.hasSuffix("/") { prefix.removeLast() }
        var port = isSecure ? 443 : 80
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
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" }), (1...65535).contains(port) else { return nil }
        guard !prefix.contains(where: { $0 == " " || $0.isNewline }) else { return nil }
        self.port = port
        self.pathPrefix = prefix
    }

    /// The scheme's port, left out of `Host` and of the description.
    private var defaultPort: Int { isSecure ? 443 : 80 }

    /// The `Host` header value.
    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == defaultPort ? name : "\(name):\(port)"
    }

    var description: String { "\(isSecure ? "https" : "http")://\(hostHeader)\(pathPrefix)" }

    /// `text` with its `%XX` escapes decoded; `nil` when an escape is malformed or the result is not UTF-8.
    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap({ Self.hexValue($0) }),
                  let low = iterator.next().flatMap({ Self.hexValue($0) }) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
