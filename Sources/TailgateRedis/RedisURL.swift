/// Parses `redis://[user:password@]host[:port][/db]` (and `redis://:password@host` for `requirepass`).
///
/// `rediss://` (TLS) is refused with its reason: the client speaks plain TCP only (docs/REDIS.md).
/// Percent-escapes in the user and password are decoded (`%40` for `@`).
extension RedisConfiguration {
    public init(url: String) throws(RedisError) {
        func invalid(_ reason: String) -> RedisError { .invalidURL(Self.redacted(url), reason: reason) }
        guard let schemeEnd = url.schemeSeparator else { throw invalid("expected redis://host[:port][/db]") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        if scheme == "rediss" { throw invalid("TLS (rediss://) is not supported; use a TLS tunnel or a private network") }
        guard scheme == "redis" else { throw invalid("the scheme must be redis://, not \(scheme)://") }
        var rest = url[schemeEnd.upperBound...]
        if let query = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            throw invalid("query parameters and fragments are not supported (\(rest[query...]))")
        }

        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), number >= 0, number < 1 << 16 else {
                    throw invalid("the database must be a number from 0, not \"\(path)\"")
                }
                database = number
            }
        }

        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let name = credentials[..<colon]
                user = name.isEmpty ? nil : try Self.percentDecoded(name, url: url)
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...], url: url)
            } else if !credentials.isEmpty {
                // `redis://secret@host`: a lone word is the password (as redis-cli -u reads it).
                password = try Self.percentDecoded(credentials, url: url)
            }
        }

        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("an IPv6 address without its closing ]") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after the address: \(after)") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw invalid("no host") }
        guard !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { throw invalid("the host \"\(host)\" is not a host name") }
        var port = 6379
        if let portText {
            guard let number = Int(portText), number > 0, number <= 65535 else {
                throw invalid("the port must be a number from 1 to 65535, not \"\(portText)\"")
            }
            port = number
        }
        self.init(host: String(host), port: port, user: user, password: password, database: database)
    }

    /// The URL with its password replaced by `***` (for error messages and `--print-config`); a URL
    /// without credentials is returned as it is.
    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.schemeSeparator, let at = url[schemeEnd.upperBound...].lastIndex(of: "@") else { return url }
        let credentials = url[schemeEnd.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url.replacingCharacters(schemeEnd.upperBound..<at, "***") }
        return url.replacingCharacters(credentials.index(after: colon)..<at, "***")
    }

    private static func percentDecoded(_ text: Substring, url: String) throws(RedisError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%") {
                guard iterator.count >= 2, let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) else {
                    throw .invalidURL(redacted(url), reason: "a bad percent-escape in the credentials")
                }
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate func replacingCharacters(_ range: Range<String.Index>, _ replacement: String) -> String {
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}

extension String {
    /// Where `://` is.
    fileprivate var schemeSeparator: Range<String.Index>? {
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix("://") { return index..<self.index(index, offsetBy: 3) }
            index = self.index(after: index)
        }
        return nil
    }
}
