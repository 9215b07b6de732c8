import NIOCore
import Testing
import TailgateCore
@testable import TailgateServer

extension GatewayIntegrationTests {
    /// Input that once brought the gateway down, kept here so that it never does again.
    @Suite("Hardening: hostile input is refused, never fatal")
    struct Hardening {
        static let key = SigningKey(id: "default", secret: Array("correct horse battery staple 0123456789".utf8))!

        /// A correctly signed token whose claims are `claims`, exactly.
        static func token(claims: String) -> String {
            let input = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
            return input + "." + Base64URL.encode(key.signature(of: Array(input.utf8)))
        }

        @Test("a validly signed token with an exp beyond Int64 (a 'never expires' sentinel) is a 401, and the gateway keeps serving",
              arguments: ["1e300", "-1e300", "9223372036854775808", "1e19", "2000000000.5"])
        func hugeExpiry(exp: String) async throws {
            try await withGateway(configure: { $0.access = AccessPolicy(keys: SigningKeys(keys: [Self.key])) }) { gateway in
                _ = try gateway.register("demo-1")
                let token = Self.token(claims: #"{"workers":["*"],"scope":"read","exp":\#(exp)}"#)
                let api = try await gateway.get("/api/workers", headers: [("Authorization", "Bearer \(token)")])
                #expect(api.status == 401)
                #expect(api.errorCode == "token_invalid")
                let stream = try await gateway.get("/ws/workers/demo-1?access_token=\(token)", headers: [
                    ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ])
                #expect(stream.status == 401)
                let valid = AccessToken(workers: ["*"], scope: [.read], expiresAt: Int64(Timestamp.now().microseconds / 1_000_000) + 60)
                let ok = try await gateway.get("/api/workers", headers: [("Authorization", "Bearer \(valid.signed(with: Self.key))")])
                #expect(ok.status == 200, "still serving")
            }
        }
    }
}
