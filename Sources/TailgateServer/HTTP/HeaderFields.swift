import NIOHTTP1

/// Header lookups a stream handshake makes on every connection, without the arrays and lowercased
/// copies of `HTTPHeaders[canonicalForm:]`. Each gives the same answer as the expression in its
/// comment; a value with bytes beyond ASCII takes that expression itself.
extension HTTPHeaders {
    /// `self[canonicalForm: name].contains { $0.lowercased() == token }` (`token` lowercase): whether
    /// the comma-separated field `name` lists `token`, ignoring case.
    func lists(_ token: StaticString, in name: StaticString) -> Bool {
        for (field, value) in self where Self.equalsIgnoringASCIICase(field, name) {
            var value = value
            let listed = value.withUTF8 { bytes -> Bool? in
                var elementStart = 0
                for index in 0...bytes.count {
                    if index < bytes.count {
                        if bytes[index] >= 0x80 { return nil }
                        if bytes[index] != UInt8(ascii: ",") { continue }
                    }
                    var start = elementStart, end = index
                    elementStart = index + 1
                    while start < end, bytes[start] == UInt8(ascii: " ") || bytes[start] == UInt8(ascii: "\t") { start += 1 }
                    while end > start, bytes[end - 1] == UInt8(ascii: " ") || bytes[end - 1] == UInt8(ascii: "\t") { end -= 1 }
                    if Self.equalsIgnoringASCIICase(UnsafeBufferPointer(rebasing: bytes[start..<end]), token) { return true }
                }
                return false
            }
            switch listed {
            case true?: return true
            case false?: continue
            case nil: return self[canonicalForm: "\(name)"].contains { $0.lowercased() == "\(token)" }
            }
        }
        return false
    }

    /// How many fields are called `name` (any case).
    func count(of name: StaticString) -> Int {
        var count = 0
        for (field, _) in self where Self.equalsIgnoringASCIICase(field, name) { count += 1 }
        return count
    }

    /// Whether `text` is `lowercase` in any ASCII case (`lowercase` given in lowercase).
    static func equalsIgnoringASCIICase(_ text: String, _ lowercase: StaticString) -> Bool {
        guard text.utf8.count == lowercase.utf8CodeUnitCount else { return false }
        var text = text
        return text.withUTF8 { equalsIgnoringASCIICase($0, lowercase) }
    }

    static func equalsIgnoringASCIICase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            for index in 0..<bytes.count {
                var byte = bytes[index]
                if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte |= 0x20 }
                if byte != expected[index] { return false }
            }
            return true
        }
    }
}
