import NIOCore
import TailgateCore

/// What a token lets its bearer do.
public struct TokenScope: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Watch streams and read the API.
    public static let read = TokenScope(rawValue: 1)
    /// Publish records and stop workers over HTTP.
    public static let publish = TokenScope(rawValue: 2)

    /// Parses `read`, `publish` or `read,publish`.
    public init?(names: String) {
        var scope: TokenScope = []
        for name in names.split(separator: ",") {
            switch name.trimmingASCIISpaces() {
            case "read": scope.insert(.read)
            case "publish": scope.insert(.publish)
            default: return nil
            }
        }
        guard !scope.isEmpty else { return nil }
        self = scope
    }

    var names: [String] {
        var names: [String] = []
        if contains(.read) { names.append("read") }
        if contains(.publish) { names.append("publish") }
        return names
    }
}

/// A signed, expiring token scoped to worker ids: `base64url(claims).base64url(HMAC-SHA256(secret, claims))`,
/// where the claims are JSON `{"w":["002050.SZ"] or ["*"],"s":["read"],"exp":1764250000}`.
public struct AccessToken: Sendable, Equatable {
    /// The workers it covers; `["*"]` for all.
    public var workers: [String]
    /// What it allows.
    public var scope: TokenScope
    /// Unix seconds after which it is refused.
    public var expiresAt: Int64

    public init(workers: [String], scope: TokenScope, expiresAt: Int64) {
        self.workers = workers
        self.scope = scope
        self.expiresAt = expiresAt
    }

    /// Whether it covers `worker`.
    public func covers(_ worker: WorkerID) -> Bool {
        workers.contains("*") || workers.contains(worker.rawValue)
    }

    /// The signed text.
    public func signed(with secret: [UInt8]) -> String {
        var claims = ByteBuffer()
        claims.writeStaticString("{\"w\":[")
        for (index, worker) in workers.enumerated() {
            if index > 0 { claims.writeStaticString(",") }
            claims.writeJSONString(worker)
        }
        claims.writeStaticString("],\"s\":[")
        for (index, name) in scope.names.enumerated() {
            if index > 0 { claims.writeStaticString(",") }
            claims.writeJSONString(name)
        }
        claims.writeStaticString("],\"exp\":")
        claims.writeJSONInteger(expiresAt)
        claims.writeStaticString("}")
        let claimBytes = Array(claims.readableBytesView)
        let mac = HMACSHA256.authenticationCode(for: claimBytes, key: secret)
        return Base64URL.encode(claimBytes) + "." + Base64URL.encode(mac)
    }

    /// Why a token was refused.
    public enum Rejection: Error, Equatable {
        case malformed
        case badSignature
        case expired
    }

    /// Checks the signature and expiry of `text`.
    public static func verify(_ text: String, secret: [UInt8], now: Int64) throws(Rejection) -> AccessToken {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let claimBytes = Base64URL.decode(parts[0]), let mac = Base64URL.decode(parts[1]) else {
            throw .malformed
        }
        guard HMACSHA256.isValid(mac, for: claimBytes, key: secret) else { throw .badSignature }
        let claims: JSONValue
        do {
            claims = try claimBytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in try JSONParser.parse(buffer) }
        } catch {
            throw .malformed
        }
        guard case .array(let workerValues)? = claims["w"], case .array(let scopeValues)? = claims["s"],
              case .number(let expiry)? = claims["exp"]
        else { throw .malformed }
        let workers = workerValues.compactMap(\.stringValue)
        guard let scope = TokenScope(names: scopeValues.compactMap(\.stringValue).joined(separator: ",")) else { throw .malformed }
        let token = AccessToken(workers: workers, scope: scope, expiresAt: Int64(expiry))
        guard token.expiresAt > now else { throw .expired }
        return token
    }
}

/// Base64 with the URL-safe alphabet and no padding (RFC 4648 §5).
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)], alphabet[Int(value & 63)]]
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let value = UInt32(bytes[index]) << 16
            out += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)]]
        } else if rest == 2 {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: Substring) -> [UInt8]? {
        var values: [UInt8] = []
        values.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            guard let value = alphabet.firstIndex(of: byte) else { return nil }
            values.append(UInt8(value))
        }
        guard values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            var value: UInt32 = 0
            for (offset, digit) in chunk.enumerated() { value |= UInt32(digit) << UInt32(18 - 6 * offset) }
            out.append(UInt8(value >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(value >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(value & 0xFF)) }
            index += 4
        }
        return out
    }
}

extension Substring {
    func trimmingASCIISpaces() -> Substring {
        var text = self
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}
