import NIOCore
import NIOHTTP1

/// Reads the head of a request for a worker's stream (`GET /ws/workers/…`) straight from a
/// connection's first bytes, for `StreamHandshakeHandler`.
///
/// It reads a strict subset of HTTP/1.1 only: `GET`, an origin-form target of RFC 3986 characters
/// under `/ws/workers/` (or the base path's), `HTTP/1.1`, `name: value` fields of visible ASCII with
/// no `Content-Length` or `Transfer-Encoding`, the whole head within `maxHeadBytes` and at most
/// `maxFields` fields. Anything else is `.other`: the gateway's full HTTP handlers read it instead, so
/// refusals of malformed or oversized heads stay theirs, and every head read here is one NIO's parser
/// reads the same way.
struct StreamRequestHead {
    /// What the bytes read so far are.
    enum Parsed {
        /// A head may still come: read more.
        case incomplete
        /// A complete head of a stream request, `length` bytes long (what follows it is the client's).
        case head(HTTPRequestHead, length: Int)
        /// Not a request this reads: hand the bytes to the HTTP handlers.
        case other
    }

    /// The target prefixes of a worker's stream: `/ws/workers/`, and with a base path that too.
    private let prefixes: [[UInt8]]
    /// The longest of them.
    private let longestPrefix: Int
    /// The largest head read here (`ServerConfiguration.maxHeaderBytes`, NIO's limits for the same head).
    let maxHeadBytes: Int
    /// The most fields read here (NIO's limit on the same connection).
    static let maxFields = 256

    init(basePath: String, maxHeadBytes: Int) {
        var prefixes = [Array(Route.streamPathPrefix.utf8)]
        if !basePath.isEmpty { prefixes.append(Array((basePath + Route.streamPathPrefix).utf8)) }
        self.prefixes = prefixes
        self.longestPrefix = prefixes.map(\.count).max() ?? 0
        self.maxHeadBytes = maxHeadBytes
    }

    /// Reads `buffer`'s readable bytes (not consuming them).
    func parse(_ buffer: ByteBuffer) -> Parsed {
        buffer.withUnsafeReadableBytes { parse($0) }
    }

    /// Reads the head once it may be whole, `.incomplete` before; `received` bytes of `buffer` were
    /// looked at before. A head trickled in byte by byte costs a look at each new byte, and a check of
    /// the lines received (no field strings made) each time a line ends — not a parse of everything
    /// received on every read. So a head that goes wrong is handed on (and refused by the HTTP
    /// handlers) as soon as the bad byte is in or the bad line has ended, never left waiting for an
    /// empty line. (A line is judged when it ends: until then a bad request line waits like a slow one.)
    func parse(_ buffer: ByteBuffer, after received: Int) -> Parsed {
        buffer.withUnsafeReadableBytes { bytes in
            if bytes.count <= maxHeadBytes && !Self.mayEndHead(bytes, after: received) {
                // Only the method and the target's prefix can tell already that this is another request.
                let start = UnsafeRawBufferPointer(rebasing: bytes[..<min(bytes.count, Self.get.count + longestPrefix)])
                if case .other = parse(start) { return .other }
                // A byte no head read here has: handed on at once.
                var endsLine = false
                for index in min(received, bytes.count)..<bytes.count {
                    let byte = bytes[index]
                    guard (byte >= 0x20 && byte <= 0x7E) || byte == Self.tab || byte == Self.cr || byte == Self.lf else { return .other }
                    if byte == Self.lf || byte == Self.cr { endsLine = true }
                }
                // A line ended (or is ending): the lines so far must be a head's beginning.
                if endsLine, case .other = parse(bytes, makingHead: false) { return .other }
                return .incomplete
            }
            return parse(bytes)
        }
    }

    /// Whether the bytes after the first `received` hold a line feed followed by an empty line (CRLF or
    /// a bare LF): where a head can end. (A head read here ends with CRLF CRLF; anything else is handed on.)
    private static func mayEndHead(_ bytes: UnsafeRawBufferPointer, after received: Int) -> Bool {
        var index = max(0, received - 2)
        while index + 1 < bytes.count {
            if bytes[index] == lf && (bytes[index + 1] == lf || (bytes[index + 1] == cr && index + 2 < bytes.count && bytes[index + 2] == lf)) {
                return true
            }
            index += 1
        }
        return false
    }

    private static let get = Array("GET ".utf8)
    private static let version = Array(" HTTP/1.1\r\n".utf8)
    private static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), colon = UInt8(ascii: ":")
    private static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")

    /// Reads `bytes`. With `makingHead` false it only checks them (no string is made, `.head` is never
    /// answered: `.incomplete` instead), for heads still coming in.
    func parse(_ bytes: UnsafeRawBufferPointer, makingHead: Bool = true) -> Parsed {
        // The method, as far as it has come.
        let methodBytes = min(bytes.count, Self.get.count)
        for index in 0..<methodBytes where bytes[index] != Self.get[index] { return .other }
        // The target: RFC 3986 characters up to the space before the version.
        var index = Self.get.count
        while index < bytes.count, Self.isTargetByte(bytes[index]) { index += 1 }
        let targetEnd = index
        if targetEnd > Self.get.count || bytes.count > targetEnd {
            // Enough of the target to compare with the prefixes.
            let target = UnsafeRawBufferPointer(rebasing: bytes[min(Self.get.count, bytes.count)..<targetEnd])
            let complete = targetEnd < bytes.count
            guard prefixes.contains(where: { prefix in
                let common = min(prefix.count, target.count)
                return target.prefix(common).elementsEqual(prefix.prefix(common)) && (!complete || target.count > prefix.count)
            }) else { return .other }
        }
        if targetEnd >= maxHeadBytes { return .other }
        guard targetEnd < bytes.count else { return .incomplete }
        // The version.
        for offset in 0..<Self.version.count {
            guard targetEnd + offset < bytes.count else { return .incomplete }
            if bytes[targetEnd + offset] != Self.version[offset] { return .other }
        }
        // The fields, up to the empty line.
        var headers: [(String, String)] = []
        var fields = 0
        if makingHead { headers.reserveCapacity(8) }
        index = targetEnd + Self.version.count
        while true {
            if index >= maxHeadBytes { return .other }
            guard index < bytes.count else { return .incomplete }
            if bytes[index] == Self.cr {
                guard index + 1 < bytes.count else { return .incomplete }
                guard bytes[index + 1] == Self.lf, index + 2 <= maxHeadBytes else { return .other }
                guard makingHead else { return .incomplete }
                let uri = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[Self.get.count..<targetEnd]), as: UTF8.self)
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))
                return .head(head, length: index + 2)
            }
            // A name: token characters, then a colon.
            let nameStart = index
            while index < bytes.count, Self.isTokenByte(bytes[index]) { index += 1 }
            guard index < bytes.count else { return index >= maxHeadBytes ? .other : .incomplete }
            guard bytes[index] == Self.colon, index > nameStart else { return .other }
            let nameEnd = index
            index += 1
            // The value: visible ASCII, spaces and tabs, without the spaces around it.
            while index < bytes.count, bytes[index] == Self.space || bytes[index] == Self.tab { index += 1 }
            let valueStart = index
            var valueEnd = index
            while index < bytes.count, bytes[index] != Self.cr {
                let byte = bytes[index]
                guard (byte >= 0x21 && byte <= 0x7E) || byte == Self.space || byte == Self.tab else { return .other }
                index += 1
                if byte != Self.space && byte != Self.tab { valueEnd = index }
            }
            guard index + 1 < bytes.count else { return index + 1 >= maxHeadBytes ? .other : .incomplete }
            // Spaces after a value (which parsers treat differently) are left to the HTTP handlers.
            guard bytes[index + 1] == Self.lf, valueEnd == index else { return .other }
            index += 2
            guard fields < Self.maxFields else { return .other }
            fields += 1
            let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameEnd])
            if Self.framesABody(name) { return .other }
            guard makingHead else { continue }
            headers.append((String(decoding: name, as: UTF8.self),
                            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]), as: UTF8.self)))
        }
    }

    /// `Content-Length` and `Transfer-Encoding` (any case): a stream request has no body.
    private static func framesABody(_ name: UnsafeRawBufferPointer) -> Bool {
        func equalsIgnoringCase(_ lowercase: StaticString) -> Bool {
            guard name.count == lowercase.utf8CodeUnitCount else { return false }
            let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
            for index in 0..<name.count {
                let byte = name[index]
                let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
                if lowered != expected[index] { return false }
            }
            return true
        }
        return equalsIgnoringCase("content-length") || equalsIgnoringCase("transfer-encoding")
    }

    /// RFC 3986 unreserved, sub-delims, `:`, `@`, `/`, `?` and `%`.
    private static func isTargetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
             UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
             UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "%"):
            return true
        default:
            return false
        }
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
