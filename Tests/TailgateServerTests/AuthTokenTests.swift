import Testing
import TailgateCore
@testable import TailgateServer

/// Access tokens: HS256 JSON Web Tokens, checked strictly (one encoding, typed claims, no trap on any input).
struct AuthTokenTests {
    private static let secret = Array("correct horse battery staple 0123456789".utf8)
    private static let key = SigningKey(id: "k1", secret: secret)!
    private static let keys = SigningKeys(keys: [key])

    private static func b64(_ text: String) -> String { Base64URL.encode(Array(text.utf8)) }

    /// A token with these exact header and claims texts, signed with `key`.
    private static func token(header: String = #"{"alg":"HS256","typ":"JWT","kid":"k1"}"#, claims: String,
                              key: SigningKey = key) -> String {
        let input = b64(header) + "." + b64(claims)
        return input + "." + Base64URL.encode(key.signature(of: Array(input.utf8)))
    }

    @Test("HS256 signatures match RFC 7515 appendix A.1")
    func rfc7515Vector() throws {
        // The JWK "k" of A.1, base64url: the HMAC key's bytes.
        let keyBytes = try #require(Base64URL.decode(Array(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow".utf8)))
        let key = try #require(SigningKey(id: "a1", secret: keyBytes))
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        #expect(Base64URL.encode(key.signature(of: Array(input.utf8))) == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    }

    @Test func tokensRoundTripAndAreRefusedWhenTamperedExpiredOrSignedWithAnotherSecret() throws {
        let token = AccessToken(workers: ["002050.SZ"], scope: [.read], expiresAt: 2_000_000_000)
        let text = token.signed(with: Self.key)
        #expect(try AccessToken.verify(text, keys: Self.keys, now: 1_900_000_000) == token)
        #expect(throws: AccessToken.Rejection.expired) { try AccessToken.verify(text, keys: Self.keys, now: 2_000_000_000) }
        let other = SigningKeys(keys: [SigningKey(id: "k1", secret: Array("another secret of enough length".utf8))!])
        #expect(throws: AccessToken.Rejection.badSignature) { try AccessToken.verify(text, keys: other, now: 0) }
        let parts = text.split(separator: ".")
        let forged = AccessToken(workers: ["*"], scope: [.read, .publish], expiresAt: 2_000_000_000).signed(with: Self.key)
        let forgedClaims = forged.split(separator: ".")[1]
        #expect(throws: AccessToken.Rejection.badSignature) {
            try AccessToken.verify("\(parts[0]).\(forgedClaims).\(parts[2])", keys: Self.keys, now: 0)
        }
        #expect(throws: AccessToken.Rejection.malformed) { try AccessToken.verify("not-a-token", keys: Self.keys, now: 0) }
        #expect(token.covers(WorkerID("002050.SZ")!))
        #expect(!token.covers(WorkerID("600519.SH")!))
    }

    @Test("the key is found by kid; every key of the file is accepted (rotation); an unknown kid or alg is refused")
    func keysAndRotation() throws {
        let old = try #require(SigningKey(id: "2025", secret: Array("the old secret, 16+ bytes".utf8)))
        let new = try #require(SigningKey(id: "2026", secret: Array("the new secret, 16+ bytes".utf8)))
        let both = SigningKeys(keys: [new, old])
        let token = AccessToken(workers: ["*"], scope: [.read], expiresAt: 2_000_000_000)
        #expect(try AccessToken.verify(token.signed(with: old), keys: both, now: 0) == token)
        #expect(try AccessToken.verify(token.signed(with: new), keys: both, now: 0) == token)
        #expect(throws: AccessToken.Rejection.unsupportedKey) {
            try AccessToken.verify(token.signed(with: old), keys: SigningKeys(keys: [new]), now: 0)
        }
        // No kid: any key of the file may have signed it.
        let claims = #"{"workers":["*"],"scope":"read","exp":2000000000}"#
        #expect(try AccessToken.verify(Self.token(header: #"{"alg":"HS256"}"#, claims: claims, key: old), keys: both, now: 0) == token)
        for header in [#"{"alg":"none","kid":"k1"}"#, #"{"alg":"HS512","kid":"k1"}"#, #"{"kid":"k1"}"#] {
            #expect(throws: AccessToken.Rejection.unsupportedKey) {
                try AccessToken.verify(Self.token(header: header, claims: claims), keys: Self.keys, now: 0)
            }
        }
    }

    @Test("claims have strict types; out-of-range numbers are refused, never trapped on", arguments: [
        #"{"workers":["*"],"scope":"read","exp":1e300}"#,
        #"{"workers":["*"],"scope":"read","exp":-1e300}"#,
        #"{"workers":["*"],"scope":"read","exp":1700000000.5}"#,
        #"{"workers":["*"],"scope":"read","exp":"2000000000"}"#,
        #"{"workers":["*"],"scope":"read","exp":2000000000,"nbf":1e19}"#,
        #"{"workers":["*"],"scope":"read","exp":2000000000,"iat":"yesterday"}"#,
        #"{"workers":["*"],"scope":["read"],"exp":2000000000}"#,
        #"{"workers":["*"],"scope":"admin","exp":2000000000}"#,
        #"{"workers":"*","scope":"read","exp":2000000000}"#,
        #"{"workers":[5],"scope":"read","exp":2000000000}"#,
        #"{"workers":["no spaces please"],"scope":"read","exp":2000000000}"#,
        #"{"workers":[],"scope":"read","exp":2000000000}"#,
        #"{"workers":["*"],"scope":"read"}"#,
        #"["workers"]"#,
    ])
    func strictClaims(claims: String) {
        #expect(throws: AccessToken.Rejection.malformed) {
            try AccessToken.verify(Self.token(claims: claims), keys: Self.keys, now: 0)
        }
    }

    @Test("nbf: refused before, accepted from then on")
    func notBefore() throws {
        let token = AccessToken(workers: ["*"], scope: [.read, .publish], expiresAt: 2_000_000_000, notBefore: 1_800_000_000)
        let text = token.signed(with: Self.key)
        #expect(throws: AccessToken.Rejection.notYetValid) { try AccessToken.verify(text, keys: Self.keys, now: 1_799_999_999) }
        #expect(try AccessToken.verify(text, keys: Self.keys, now: 1_800_000_000) == token)
    }

    @Test("one token, one text: padding, stray low bits and other alphabets are refused")
    func canonicalEncoding() throws {
        let text = AccessToken(workers: ["*"], scope: [.read], expiresAt: 2_000_000_000).signed(with: Self.key)
        var parts = text.split(separator: ".").map(String.init)
        #expect(parts[2].count == 43, "32 bytes of HMAC: 43 digits, the last carrying 2 stray bits")
        let last = parts[2].last!
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let index = alphabet.firstIndex(of: last)!
        // Same bytes, other stray bits: decodes to the same MAC, and must be refused.
        parts[2].removeLast()
        parts[2].append(alphabet[index ^ 1])
        #expect(throws: AccessToken.Rejection.malformed) { try AccessToken.verify(parts.joined(separator: "."), keys: Self.keys, now: 0) }
        #expect(throws: AccessToken.Rejection.malformed) { try AccessToken.verify(text + "=", keys: Self.keys, now: 0) }
        let standardAlphabet = parts[0] + "." + parts[1] + ".+" + parts[2].dropFirst()
        #expect(throws: AccessToken.Rejection.malformed) { try AccessToken.verify(standardAlphabet, keys: Self.keys, now: 0) }
        #expect(Base64URL.decode(Array("QQ".utf8)) == [0x41])
        #expect(Base64URL.decode(Array("QR".utf8)) == nil, "QR has a stray bit set")
    }

    @Test("secret files: one bare secret, or one 'KID SECRET' per line; mistakes are clear errors")
    func secretFiles() throws {
        let single = try SigningKeys.parse(Array("c2VjcmV0LXNlY3JldC1zZWNyZXQ=".utf8), source: "f")
        #expect(single.keys.map(\.id) == ["default"])
        let rotated = try SigningKeys.parse(Array("# newest first\n2026 bmV3LW5ldy1uZXctbmV3LW5ldw==\n\n2025 b2xkLW9sZC1vbGQtb2xkLW9sZA==\n".utf8), source: "f")
        #expect(rotated.keys.map(\.id) == ["2026", "2025"])
        #expect(rotated.signingKey()?.id == "2026" && rotated.signingKey(id: "2025")?.id == "2025")
        let binary = try SigningKeys.parse([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xFF], source: "f")
        #expect(binary.keys.map(\.id) == ["default"])
        let passphrase = try SigningKeys.parse(Array("correct horse battery staple 0123456789".utf8), source: "f")
        #expect(passphrase.keys.map(\.id) == ["default"], "a one-line file is the secret, spaces and all")
        for (text, why) in [("short", "shorter than 16 bytes"), ("a aaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbb", "write 'KID SECRET'"),
                            ("k aaaaaaaaaaaaaaaaaaaa\nk bbbbbbbbbbbbbbbbbbbb", "appears twice"), ("b@d aaaaaaaaaaaaaaaaaaaa\nk2 bbbbbbbbbbbbbbbbbbbb", "key id is"),
                            ("# nothing", "holds no key")] {
            #expect(throws: AuthConfigurationError.self) { try SigningKeys.parse(Array(text.utf8), source: "f") }
            do { _ = try SigningKeys.parse(Array(text.utf8), source: "f") } catch { #expect(error.description.contains(why), "\(text): \(error)") }
        }
    }
}
