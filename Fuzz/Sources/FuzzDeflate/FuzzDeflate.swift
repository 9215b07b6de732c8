import FuzzSupport
import NIOCore
@testable import TailgateServer

/// libFuzzer target: the permessage-deflate offer parser (first line: `Sec-WebSocket-Extensions`
/// values separated by `|`) and the capped inflater (the rest: a client's compressed message). The
/// inflater must refuse output beyond its cap and bad data, never trap or grow without bound.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDeflate(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let newline = bytes.firstIndex(of: 0x0A) ?? bytes.count
    let offers = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<newline]), as: UTF8.self)
    let parameters = PerMessageDeflateNegotiation.negotiate(offers.split(separator: "|").map(String.init))
    _ = parameters?.responseHeader
    let compressed = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: bytes[min(newline + 1, bytes.count)...]))
    for keepsContext in [false, true] {
        let inflater = Inflater(keepsContext: keepsContext)
        if let output = try? inflater.inflate(compressed, limit: 4096) {
            precondition(output.readableBytes <= 4096, "the inflater went past its cap")
        }
    }
    return 0
}

@_cdecl("FuzzDeflate_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzDeflate)
}
