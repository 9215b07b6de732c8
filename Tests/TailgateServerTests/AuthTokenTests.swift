import Testing
@testable import TailgateServer
import TailgateCore

/// SHA-256 and HMAC-SHA256 against the published vectors, and tokens signed and checked with them.
@Suite("Access tokens")
struct AuthTokenTests {
    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    private static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    @Test("SHA-256 (FIPS 180-4 vectors)", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        (String(repeating: "a", count: 1000), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
    ])
    func sha256(_ input: String, _ digest: String) {
        #expect(Self.hex(SHA256.hash(Array(input.utf8))) == digest)
    }

    @Test("HMAC-SHA256 (RFC 4231 test cases 1, 2, 3, 4, 6, 7)", arguments: [
        ("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", String(repeating: "dd", count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("0102030405060708090a0b0c0d0e0f10111213141516171819", String(repeating: "cd", count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (String(repeating: "aa", count: 131),
         "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (String(repeating: "aa", count: 131),
         "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ])
    func hmac(_ key: String, _ message: String, _ code: String) {
        let mac = HMACSHA256.authenticationCode(for: Self.bytes(hex: message), key: Self.bytes(hex: key))
        #expect(Self.hex(mac) == code)
        #expect(HMACSHA256.isValid(mac, for: Self.bytes(hex: message), key: Self.bytes(hex: key)))
        var tampered = mac
        tampered[0] ^= 1
        #expect(!HMACSHA256.isValid(tampered, for: Self.bytes(hex: message), key: Self.bytes(hex: key)))
    }

    @Test func tokensRoundTripAndAreRefusedWhenTamperedExpiredOrSignedWithAnotherSecret() throws {
        let secret = Array("correct horse battery staple 0123456789".utf8)
        let token = AccessToken(workers: ["002050.SZ"], scope: [.read], expiresAt: 2_000_000_000)
        let text = token.signed(with: secret)
        #expect(try AccessToken.verify(text, secret: secret, now: 1_900_000_000) == token)
        #expect(throws: AccessToken.Rejection.expired) { try AccessToken.verify(text, secret: secret, now: 2_000_000_000) }
        #expect(throws: AccessToken.Rejection.badSignature) {
            try AccessToken.verify(text, secret: Array("another secret of enough length".utf8), now: 0)
        }
        let parts = text.split(separator: ".")
        let forged = AccessToken(workers: ["*"], scope: [.read, .publish], expiresAt: 2_000_000_000).signed(with: Array("x".utf8))
        #expect(throws: AccessToken.Rejection.badSignature) {
            try AccessToken.verify(forged.split(separator: ".")[0] + "." + parts[1], secret: secret, now: 0)
        }
        #expect(throws: AccessToken.Rejection.malformed) { try AccessToken.verify("not-a-token", secret: secret, now: 0) }
        #expect(token.covers(WorkerID("002050.SZ")!))
        #expect(!token.covers(WorkerID("600519.SH")!))
    }
}
