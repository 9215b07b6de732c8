import Crypto
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
    /// Read `GET /metrics` (from any address; its `workers` claim is not consulted).
    public static let metrics = TokenScope(rawValue: 4)

    /// Parses `read`, `publish`, `metrics` or several, separated by commas or spaces (`read,publish`,
    /// `read metrics`).
    public init?(names: String) {
        var scope: TokenScope = []
        for name in names.split(whereSeparator: { $0 == "," || $0 == " " }) {
            switch name {
            case "read": scope.insert(.read)
            case "publish": scope.insert(.publish)
            case "metrics": scope.insert(.metrics)
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
        if contains(.metrics) { names.append("metrics") }
        return names
    }
}

/// An access token: a JSON Web Token (RFC 7519) signed with HMAC-SHA256 (`HS256`, RFC 7515), so that an
/// existing identity service can mint them.
///
/// Header `{"alg":"HS256","typ":"JWT","kid":"…"}`; claims `{"workers":["002050.SZ"] or ["*"],
/// "scope":"read publish","exp":1764250000,"nbf":…}`. `exp` is required, `nbf` optional, both whole
/// Unix seconds; `workers` is an array of worker ids (or `*`), `scope` a space-separated string of
/// `read`, `publish` and `metrics`. Other
/// claims (`iss`, `sub`, `iat`, …) are allowed and ignored. A token has one encoding: base64url without
/// padding and with no stray bits, or it is refused.
public struct AccessToken: Sendable, Equatable {
    /// The workers it covers; `["*"]` for all.
    public var workers: [String]
    /// What it allows.
    public var scope: TokenScope
    /// Unix seconds from which it is refused.
    public var expiresAt: Int64
    /// Unix seconds before which it is refused, if given.
    public var notBefore: Int64?

    public init(workers: [String], scope: TokenScope, expiresAt: Int64, notBefore: Int64? = nil) {
        self.workers = workers
        self.scope = scope
        self.expiresAt = expiresAt
        self.notBefore = notBefore
    }

    /// Whether it covers `worker`.
    public func covers(_ worker: WorkerID) -> Bool {
        workers.contains("*") || workers.contains(worker.rawValue)
    }

    /// The signed token, with `key.id` as its `kid`.
    public func signed(with key: SigningKey) -> String {
        var header = ByteBuffer()
        header.writeStaticString("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":")
        header.writeJSONString(key.id)
        header.writeStaticString("}")
        var claims = ByteBuffer()
        claims.writeStaticString("{\"workers\":[")
        for (index, worker) in workers.enumerated() {
            if index > 0 { claims.writeStaticString(",") }
            claims.writeJSONString(worker)
        }
        claims.writeStaticString("],\"scope\":")
        claims.writeJSONString(scope.names.joined(separator: " "))
        claims.writeStaticString(",\"exp\":")
        claims.writeJSONInteger(expiresAt)
        if let notBefore {
            claims.writeStaticString(",\"nbf\":")
            claims.writeJSONInteger(notBefore)
        }
        claims.writeStaticString("}")
        let signingInput = Base64URL.encode(Array(header.readableBytesView)) + "." + Base64URL.encode(Array(claims.readableBytesView))
        return signingInput + "." + Base64URL.encode(key.signature(of: Array(signingInput.utf8)))
    }

    /// Why a token was refused.
    public enum Rejection: Error, Equatable {
        /// Not three canonical base64url parts of JSON objects with the claims' types.
        case malformed
        /// An `alg` other than HS256, or a `kid` of no key the gateway holds.
        case unsupportedKey
        /// The signature does not match.
        case badSignature
        /// `exp` has passed.
        case expired
        /// `nbf` has not come yet.
        case notYetValid
    }

    /// Checks `text`'s encoding, signature, claims and times.
    public static func verify(_ text: String, keys: SigningKeys, now: Int64) throws(Rejection) -> AccessToken {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]), let claimBytes = Base64URL.decode(parts[1]),
              let signature = Base64URL.decode(parts[2])
        else { throw .malformed }
        guard case .object(let header) = try json(headerBytes) else { throw .malformed }
        guard header["alg"]?.stringValue == "HS256" else { throw .unsupportedKey }
        if let type = header["typ"], type.stringValue?.uppercased() != "JWT" { throw .malformed }
        let candidates: [SigningKey]
        switch header["kid"] {
        case nil: candidates = keys.keys
        case .string(let id)?:
            guard let key = keys.key(id: id) else { throw .unsupportedKey }
            candidates = [key]
        default: throw .malformed
        }
        let signingInput = Array(text.utf8.prefix(parts[0].count + 1 + parts[1].count))
        guard candidates.contains(where: { $0.isValid(signature, of: signingInput) }) else { throw .badSignature }

        guard case .object(let claims) = try json(claimBytes) else { throw .malformed }
        guard case .array(let workerValues)? = claims["workers"], !workerValues.isEmpty,
              case .string(let scopeText)? = claims["scope"], let scope = TokenScope(names: scopeText),
              let expiresAt = wholeSeconds(claims["exp"])
        else { throw .malformed }
        var workers: [String] = []
        for value in workerValues {
            guard let worker = value.stringValue, worker == "*" || WorkerID(worker) != nil else { throw .malformed }
            workers.append(worker)
        }
        var notBefore: Int64?
        if let value = claims["nbf"] {
            guard let seconds = wholeSeconds(value) else { throw .malformed }
            notBefore = seconds
        }
        if let issuedAt = claims["iat"], wholeSeconds(issuedAt) == nil { throw .malformed }
        let token = AccessToken(workers: workers, scope: scope, expiresAt: expiresAt, notBefore: notBefore)
        guard now < expiresAt else { throw .expired }
        if let notBefore, now < notBefore { throw .notYetValid }
        return token
    }

    private static func json(_ bytes: [UInt8]) throws(Rejection) -> JSONValue {
        do {
            return try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in try JSONParser.parse(buffer) }
        } catch {
            throw .malformed
        }
    }

    /// A NumericDate as whole seconds: an integral JSON number within ±2^53 (exactly representable), else nil.
    static func wholeSeconds(_ value: JSONValue?) -> Int64? {
        guard case .number(let number)? = value, number.isFinite, number == number.rounded(.towardZero),
              abs(number) <= 9_007_199_254_740_992
        else { return nil }
        return Int64(number)
    }
}

/// One key that signs and checks tokens: its id (the tokens' `kid`) and its secret.
public struct SigningKey: Sendable {
    /// The key's id, `[A-Za-z0-9._-]{1,64}`.
    public let id: String
    private let secret: [UInt8]

    /// A key of at least 16 bytes of secret.
    public init?(id: String, secret: [UInt8]) {
        guard SigningKeys.isValidID(id), secret.count >= 16 else { return nil }
        self.id = id
        self.secret = secret
    }

    /// HMAC-SHA256 of `input`.
    func signature(of input: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: secret)))
    }

    /// Whether `signature` is HMAC-SHA256 of `input`, compared in constant time.
    func isValid(_ signature: [UInt8], of input: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: SymmetricKey(data: secret))
    }
}

/// The keys of a secret file: the first signs new tokens, every one is accepted, so that a secret can be
/// rotated with an overlap (add the new key first, hand out tokens, then remove the old one).
///
/// A file of one line holds one key, `default`: the line is its secret (at least 16 bytes, spaces
/// allowed; e.g. base64 from `head -c 32 /dev/urandom | base64`). A file of several keys holds one per
/// line, `KID SECRET` (an id of `[A-Za-z0-9._-]`, white space, the secret); to rotate a one-key file,
/// keep its key as `default OLD` beside the new one. Blank lines and lines starting with `#` are
/// skipped. A file that is not text (a raw binary secret) is one key, `default`, made of the whole file.
public struct SigningKeys: Sendable {
    public let keys: [SigningKey]

    public init(keys: [SigningKey]) {
        self.keys = keys
    }

    /// The key with this id.
    public func key(id: String) -> SigningKey? {
        keys.first { $0.id == id }
    }

    /// The key that signs new tokens: `id`, or the first.
    public func signingKey(id: String? = nil) -> SigningKey? {
        id.map { key(id: $0) } ?? keys.first
    }

    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
        }
    }

    /// Reads the keys of a file's contents; `source` names it in errors.
    public static func parse(_ bytes: [UInt8], source: String) throws(AuthConfigurationError) -> SigningKeys {
        let isText = !bytes.contains(0) && String(validating: bytes, as: UTF8.self) != nil
        guard isText else {
            guard let key = SigningKey(id: "default", secret: bytes) else {
                throw AuthConfigurationError("the secret in '\(source)' is shorter than 16 bytes")
            }
            return SigningKeys(keys: [key])
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.drop { $0 == " " || $0 == "\t" } }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        if lines.count == 1 {
            let secret = Array(lines[0].utf8.reversed().drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }.reversed())
            guard let key = SigningKey(id: "default", secret: secret) else {
                throw AuthConfigurationError("the secret in '\(source)' is shorter than 16 bytes; use e.g. `head -c 32 /dev/urandom | base64 > \(source)`")
            }
            return SigningKeys(keys: [key])
        }
        var keys: [SigningKey] = []
        for (index, line) in lines.enumerated() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard fields.count == 2 else {
                throw AuthConfigurationError("'\(source)' key line \(index + 1): write 'KID SECRET', one key per line")
            }
            let id = String(fields[0])
            guard isValidID(id) else {
                throw AuthConfigurationError("'\(source)' line \(index + 1): a key id is 1-64 letters, digits, '.', '_' or '-'")
            }
            guard keys.allSatisfy({ $0.id != id }) else { throw AuthConfigurationError("'\(source)': key id '\(id)' appears twice") }
            guard let key = SigningKey(id: id, secret: Array(fields[fields.count - 1].utf8)) else {
                throw AuthConfigurationError("'\(source)' key '\(id)': the secret is shorter than 16 bytes; use e.g. `head -c 32 /dev/urandom | base64`")
            }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw AuthConfigurationError("'\(source)' holds no key") }
        return SigningKeys(keys: keys)
    }
}

/// Base64 with the URL-safe alphabet and no padding (RFC 4648 §5), canonical only: a decoder that
/// refuses padding and non-zero stray bits, so that one byte string has exactly one text.
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

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

    /// The bytes of canonical unpadded base64url `text`, or nil.
    static func decode<Text: Collection<UInt8>>(_ text: Text) -> [UInt8]? {
        var digits: [UInt8] = []
        digits.reserveCapacity(text.count)
        for byte in text {
            let value = values[Int(byte)]
            guard value != 0xFF else { return nil }
            digits.append(value)
        }
        guard digits.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count * 3 / 4)
        var index = 0
        while index < digits.count {
            let chunk = digits[index..<min(index + 4, digits.count)]
            var value: UInt32 = 0
            for (offset, digit) in chunk.enumerated() { value |= UInt32(digit) << UInt32(18 - 6 * offset) }
            out.append(UInt8(value >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(value >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(value & 0xFF)) }
            // The bits below the last whole byte must be zero, or two texts would give the same bytes.
            if chunk.count == 2 && value & 0x00FFFF != 0 { return nil }
            if chunk.count == 3 && value & 0x0000FF != 0 { return nil }
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
