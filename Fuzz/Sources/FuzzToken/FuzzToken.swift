import FuzzSupport
@testable import TailgateServer

/// libFuzzer target: access token verification (a signed token whose claims are the input, and the
/// input as a token text) and the secret file parser.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let key = SigningKey(id: "default", secret: Array("fuzzing secret, 16+ bytes".utf8))!
    let keys = SigningKeys(keys: [key])
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? AccessToken.verify(text, keys: keys, now: 1_800_000_000)
    // The input as the claims of a correctly signed token: the claim checks see every shape of JSON.
    let input = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(bytes)
    let token = input + "." + Base64URL.encode(key.signature(of: Array(input.utf8)))
    _ = try? AccessToken.verify(token, keys: keys, now: 1_800_000_000)
    if let decoded = Base64URL.decode(bytes) {
        precondition(Base64URL.encode(decoded) == text, "a second text for the same bytes")
    }
    _ = try? SigningKeys.parse(bytes, source: "fuzz")
    return 0
}

@_cdecl("FuzzToken_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzToken)
}
