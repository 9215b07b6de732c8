/// The permessage-deflate parameters agreed with one client (RFC 7692).
public struct PerMessageDeflateParameters: Hashable, Sendable {
    /// The largest window the server's compressor may use (9…15, `server_max_window_bits`).
    public var serverMaxWindowBits: Int
    /// Whether the client asked for `server_max_window_bits` (then the answer must state it).
    public var serverMaxWindowBitsRequested = false
    /// The window the client said it compresses with, if it gave one (`client_max_window_bits=N`).
    public var clientMaxWindowBits: Int?
    /// Whether the client said it resets its compressor between messages (`client_no_context_takeover`).
    public var clientNoContextTakeover: Bool

    /// The `Sec-WebSocket-Extensions` response value. It always carries `server_no_context_takeover`:
    /// every message is compressed on its own, so one compressed message serves every subscriber.
    public var responseHeader: String {
        var parts = ["permessage-deflate", "server_no_context_takeover"]
        if clientNoContextTakeover { parts.append("client_no_context_takeover") }
        if serverMaxWindowBitsRequested || serverMaxWindowBits < 15 { parts.append("server_max_window_bits=\(serverMaxWindowBits)") }
        if let clientMaxWindowBits { parts.append("client_max_window_bits=\(clientMaxWindowBits)") }
        return parts.joined(separator: "; ")
    }
}

/// Reads `Sec-WebSocket-Extensions` offers and picks the first acceptable permessage-deflate one.
///
/// RFC 7692 §5–7: offers come in order of preference, possibly across several header lines; an
/// offer with an unknown, repeated or invalid parameter is declined and the next one considered;
/// other extensions are ignored. A bad offer never fails the handshake.
public enum PerMessageDeflateNegotiation {
    /// One offered extension: its name and parameters (value `nil` when given without one).
    struct Offer: Equatable {
        var name: String
        var parameters: [(name: String, value: String?)]

        static func == (lhs: Offer, rhs: Offer) -> Bool {
            lhs.name == rhs.name && lhs.parameters.elementsEqual(rhs.parameters) { $0.name == $1.name && $0.value == $1.value }
        }
    }

    /// The agreed parameters, or `nil` when no offer is acceptable.
    public static func negotiate(_ headerValues: [String]) -> PerMessageDeflateParameters? {
        for offer in headerValues.flatMap(parse) where offer.name == "permessage-deflate" {
            if let parameters = accept(offer) { return parameters }
        }
        return nil
    }

    static func accept(_ offer: Offer) -> PerMessageDeflateParameters? {
        var seen = Set<String>()
        var result = PerMessageDeflateParameters(serverMaxWindowBits: 15, clientMaxWindowBits: nil, clientNoContextTakeover: false)
        for (name, value) in offer.parameters {
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                result.clientNoContextTakeover = true
            case "server_max_window_bits":
                // zlib cannot make raw deflate streams with a 256-byte window, so 8 is declined.
                guard let value, let bits = windowBits(value), bits >= 9 else { return nil }
                result.serverMaxWindowBits = bits
                result.serverMaxWindowBitsRequested = true
            case "client_max_window_bits":
                if let value {
                    guard let bits = windowBits(value) else { return nil }
                    result.clientMaxWindowBits = bits
                }
            default:
                return nil
            }
        }
        return result
    }

    private static func windowBits(_ text: String) -> Int? {
        guard (1...2).contains(text.count), text.allSatisfy(\.isASCII), let bits = Int(text), (8...15).contains(bits) else { return nil }
        return bits
    }

    /// Splits one header value into offers (RFC 7230 lists; quoted values unquoted).
    /// Malformed pieces make an offer named "" that nobody accepts.
    static func parse(_ header: String) -> [Offer] {
        var offers: [Offer] = []
        var tokens = Tokenizer(Array(header.utf8))
        while true {
            tokens.skipSpace()
            if tokens.atEnd { break }
            if tokens.peek == UInt8(ascii: ",") { tokens.advance(); continue }
            var offer = Offer(name: tokens.token()?.lowercased() ?? "", parameters: [])
            var malformed = offer.name.isEmpty
            while true {
                tokens.skipSpace()
                if tokens.atEnd || tokens.peek == UInt8(ascii: ",") { break }
                guard tokens.peek == UInt8(ascii: ";") else { malformed = true; tokens.skip(to: UInt8(ascii: ",")); break }
                tokens.advance()
                tokens.skipSpace()
                guard let name = tokens.token()?.lowercased() else { malformed = true; tokens.skip(to: UInt8(ascii: ",")); break }
                tokens.skipSpace()
                var value: String?
                if tokens.peek == UInt8(ascii: "=") {
                    tokens.advance()
                    tokens.skipSpace()
                    value = tokens.peek == UInt8(ascii: "\"") ? tokens.quotedString() : tokens.token()
                    if value == nil { malformed = true; tokens.skip(to: UInt8(ascii: ",")); break }
                }
                offer.parameters.append((name, value))
            }
            if malformed { offer.name = "" }
            offers.append(offer)
        }
        return offers
    }

    private struct Tokenizer {
        let bytes: [UInt8]
        var index = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var atEnd: Bool { index >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[index] }
        mutating func advance() { index += 1 }
        mutating func skipSpace() { while let byte = peek, byte == 0x20 || byte == 0x09 { index += 1 } }
        mutating func skip(to stop: UInt8) { while let byte = peek, byte != stop { index += 1 } }

        static func isTokenByte(_ byte: UInt8) -> Bool {
            guard byte > 0x20 && byte < 0x7F else { return false }
            return !"()<>@,;:\\\"/[]?={}".utf8.contains(byte)
        }

        mutating func token() -> String? {
            let start = index
            while let byte = peek, Self.isTokenByte(byte) { index += 1 }
            return index > start ? String(decoding: bytes[start..<index], as: UTF8.self) : nil
        }

        mutating func quotedString() -> String? {
            advance()
            var out: [UInt8] = []
            while let byte = peek {
                index += 1
                if byte == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                if byte == UInt8(ascii: "\\") {
                    guard let escaped = peek else { return nil }
                    index += 1
                    out.append(escaped)
                } else {
                    out.append(byte)
                }
            }
            return nil
        }
    }
}
