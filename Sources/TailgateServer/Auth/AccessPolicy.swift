#if canImport(Glibc)
import Glibc
#endif
import NIOHTTP1
import TailgateCore

/// Who may do what when auth is on (`--auth-secret-file`): tokens from `?access_token=` (streams and
/// API) or `Authorization: Bearer` (API). With no keys, everything is open and `isEnabled` is false.
public struct AccessPolicy: Sendable {
    /// The keys tokens are checked with.
    public let keys: SigningKeys?

    /// Auth off.
    public static let open = AccessPolicy(keys: nil)

    /// Auth on, with tokens signed by one of `keys`.
    public init(keys: SigningKeys?) {
        self.keys = keys
    }

    /// Reads a secret file (see `SigningKeys`; at most 64 KiB, surrounding white space ignored).
    public static func loadKeys(path: String) throws(AuthConfigurationError) -> SigningKeys {
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
        return try SigningKeys.parse(bytes, source: path)
    }

    /// Whether tokens are required.
    public var isEnabled: Bool { keys != nil }

    /// The token of a request, checked; `nil` when auth is off. Throws 401 when missing, invalid or expired.
    func token(query: RequestTarget, headers: HTTPHeaders, now: Int64 = Timestamp.now().microseconds / 1_000_000) throws(GatewayError) -> AccessToken? {
        guard let keys else { return nil }
        var text = query.value("access_token")
        if text == nil, let authorization = headers.first(name: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { text = String(parts[1].trimmingASCIISpaces()) }
        }
        guard let text, !text.isEmpty else {
            throw GatewayError(.unauthorized, "auth_required", "an access token is required (access_token=… or Authorization: Bearer …)",
                               headers: [("WWW-Authenticate", "Bearer")])
        }
        let challenge = [("WWW-Authenticate", "Bearer error=\"invalid_token\"")]
        do {
            return try AccessToken.verify(text, keys: keys, now: now)
        } catch .expired {
            throw GatewayError(.unauthorized, "token_expired", "the access token has expired", headers: challenge)
        } catch .notYetValid {
            throw GatewayError(.unauthorized, "token_not_yet_valid", "the access token is not valid yet (nbf)", headers: challenge)
        } catch {
            throw GatewayError(.unauthorized, "token_invalid", "the access token is not valid", headers: challenge)
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
public struct AuthConfigurationError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
