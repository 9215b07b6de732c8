#if canImport(Glibc)
import Glibc
#endif
import NIOHTTP1
import TailgateCore

/// Who may do what when auth is on (`--auth-secret-file`): tokens from `?access_token=` (streams and
/// API) or `Authorization: Bearer` (API). With no secret, everything is open and `isEnabled` is false.
public struct AccessPolicy: Sendable {
    /// The signing secret's bytes.
    private let secret: [UInt8]?

    /// Auth off.
    public static let open = AccessPolicy(secret: nil)

    /// Auth on, with tokens signed by `secret`.
    public init(secret: [UInt8]?) {
        self.secret = secret
    }

    /// Reads a secret file (at least 16 bytes; surrounding white space ignored).
    public static func loadSecret(path: String) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw AuthConfigurationError("cannot read the secret file '\(path)'") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > 1 << 16 { throw AuthConfigurationError("the secret file '\(path)' is larger than 64 KiB") }
        }
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
        while let first = bytes.first, first == 0x0A || first == 0x0D || first == 0x20 || first == 0x09 { bytes.removeFirst() }
        guard bytes.count >= 16 else { throw AuthConfigurationError("the secret in '\(path)' is shorter than 16 bytes; use e.g. `head -c 32 /dev/urandom | base64 > \(path)`") }
        return bytes
    }

    /// Whether tokens are required.
    public var isEnabled: Bool { secret != nil }

    /// The token of a request, checked; `nil` when auth is off. Throws 401 when missing, invalid or expired.
    func token(query: RequestTarget, headers: HTTPHeaders, now: Int64 = Timestamp.now().microseconds / 1_000_000) throws(GatewayError) -> AccessToken? {
        guard let secret else { return nil }
        var text = query.value("access_token")
        if text == nil, let authorization = headers.first(name: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { text = String(parts[1].trimmingASCIISpaces()) }
        }
        guard let text, !text.isEmpty else {
            throw GatewayError(.unauthorized, "auth_required", "an access token is required (access_token=… or Authorization: Bearer …)",
                               headers: [("WWW-Authenticate", "Bearer")])
        }
        do {
            return try AccessToken.verify(text, secret: secret, now: now)
        } catch .expired {
            throw GatewayError(.unauthorized, "token_expired", "the access token has expired", headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")])
        } catch {
            throw GatewayError(.unauthorized, "token_invalid", "the access token is not valid", headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")])
        }
    }

    /// Requires `scope` on `worker` (or on every worker when `worker` is nil). No-op when auth is off.
    func require(_ scope: TokenScope, on worker: WorkerID?, token: AccessToken?) throws(GatewayError) {
        guard isEnabled, let token else { return }
        guard token.scope.contains(scope) else {
            throw GatewayError(.forbidden, "scope_not_allowed", "the access token does not allow \(scope.names.joined(separator: ","))")
        }
        if let worker, !token.covers(worker) {
            throw GatewayError(.forbidden, "worker_not_allowed", "the access token does not cover worker '\(worker)'")
        }
    }
}

/// The auth settings could not be used.
public struct AuthConfigurationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
