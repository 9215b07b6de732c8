/// A request's path and query, split and percent-decoded.
struct RequestTarget {
    /// The path as sent (not decoded).
    let path: Substring
    /// The query's name/value pairs, decoded.
    let query: [(name: String, value: String)]

    /// Splits `uri`; throws a 400 for a malformed query.
    init(_ uri: String) throws(GatewayError) {
        if uri.utf8.allSatisfy({ $0 < 0x80 }) {
            // For ASCII, characters are bytes: the same split, on bytes, without arrays of parts.
            let (asciiPath, asciiQuery) = try Self.splitASCII(uri)
            path = asciiPath
            query = asciiQuery
            return
        }
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts[0]
        var query: [(String, String)] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") where !pair.isEmpty {
                let nameAndValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = Self.percentDecode(nameAndValue[0], plusIsSpace: true),
                      let value = Self.percentDecode(nameAndValue.count > 1 ? nameAndValue[1] : "", plusIsSpace: true)
                else { throw GatewayError(.badRequest, "bad_request", "malformed percent-encoding in the query") }
                query.append((name, value))
            }
        }
        self.query = query
    }

    private static func splitASCII(_ uri: String) throws(GatewayError) -> (Substring, [(name: String, value: String)]) {
        guard let question = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (uri[...], []) }
        var query: [(name: String, value: String)] = []
        var rest = uri[uri.utf8.index(after: question)...]
        while !rest.isEmpty {
            let ampersand = rest.utf8.firstIndex(of: UInt8(ascii: "&")) ?? rest.endIndex
            let pair = rest[..<ampersand]
            rest = ampersand == rest.endIndex ? rest[rest.endIndex...] : rest[rest.utf8.index(after: ampersand)...]
            if pair.isEmpty { continue }
            let equals = pair.utf8.firstIndex(of: UInt8(ascii: "="))
            guard let name = percentDecode(pair[..<(equals ?? pair.endIndex)], plusIsSpace: true),
                  let value = percentDecode(equals.map { pair[pair.utf8.index(after: $0)...] } ?? "", plusIsSpace: true)
            else { throw GatewayError(.badRequest, "bad_request", "malformed percent-encoding in the query") }
            query.append((name, value))
        }
        return (uri[..<question], query)
    }

    /// The last value given for `name`.
    func value(_ name: String) -> String? {
        query.last(where: { $0.name == name })?.value
    }

    /// A non-negative integer parameter, `nil` when absent; a 400 when malformed.
    func unsignedValue(_ name: String, max: UInt64 = UInt64(Int64.max)) throws(GatewayError) -> UInt64? {
        guard let text = value(name) else { return nil }
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let number = UInt64(text), number <= max else {
            throw .badParameter(name, "expected a whole number from 0 to \(max), got '\(text.prefix(40))'")
        }
        return number
    }

    /// Decodes `%XX` escapes (and `+` when `plusIsSpace`); `nil` for bad escapes or invalid UTF-8.
    static func percentDecode(_ text: Substring, plusIsSpace: Bool = false) -> String? {
        guard text.utf8.contains(UInt8(ascii: "%")) || (plusIsSpace && text.utf8.contains(UInt8(ascii: "+"))) else {
            return String(text)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            } else if plusIsSpace && byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}
