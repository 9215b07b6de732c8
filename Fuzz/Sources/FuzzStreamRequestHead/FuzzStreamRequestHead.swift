import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
@testable import TailgateServer

/// libFuzzer target: the stream handshake's own request reader (`StreamRequestHead`), a differential
/// against NIO's HTTP parser. The first byte picks how the rest is cut into reads; the reads go through
/// `parse(_:after:)` as the handshake handler gives them. Traps when the pieces and one read of the whole
/// disagree (the pieces may judge a line only once it ends: then the same bytes and a line end must give
/// what the whole gives), or when a head read here is not the same head for NIO.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStreamRequestHead(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let step = Int(data[0] % 16) + 1
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let reader = StreamRequestHead(basePath: "/tg", maxHeadBytes: 2048)
    let whole = reader.parse(ByteBuffer(bytes: bytes))
    let fed = inPieces(bytes, step: step, reader: reader)
    if case .other = whole, case .incomplete = fed {
        guard case .other = inPieces(bytes + Array("\r\n".utf8), step: step, reader: reader) else {
            preconditionFailure("a bad line is still waited for once it ended")
        }
        return 0
    }
    return compare(whole, fed, bytes)
}

/// `bytes` given to `reader` in reads of `step` bytes, until the answer is no longer `.incomplete`.
func inPieces(_ bytes: [UInt8], step: Int, reader: StreamRequestHead) -> StreamRequestHead.Parsed {
    var buffer = ByteBuffer()
    var fed = StreamRequestHead.Parsed.incomplete
    var offset = 0
    while offset < bytes.count {
        let count = min(step, bytes.count - offset)
        let before = buffer.readableBytes
        buffer.writeBytes(bytes[offset..<(offset + count)])
        offset += count
        fed = reader.parse(buffer, after: before)
        if case .incomplete = fed { continue }
        break
    }
    return fed
}

func compare(_ whole: StreamRequestHead.Parsed, _ fed: StreamRequestHead.Parsed, _ bytes: [UInt8]) -> CInt {
    switch (whole, fed) {
    case (.incomplete, .incomplete), (.other, .other):
        return 0
    case (.head(let head, let length), .head(let again, let lengthAgain)):
        precondition(length == lengthAgain && head.uri == again.uri, "pieces and whole read different heads")
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        guard (try? channel.writeInbound(ByteBuffer(bytes: bytes[..<length]))) != nil,
              case .head(let nio)? = try? channel.readInbound(as: HTTPServerRequestPart.self) else {
            preconditionFailure("read as a head here, refused by NIO")
        }
        precondition(nio.method == head.method && nio.uri == head.uri && nio.version == head.version, "NIO reads another request line")
        precondition(nio.headers.map { "\($0.name): \($0.value)" } == head.headers.map { "\($0.name): \($0.value)" },
                     "NIO reads other fields")
        return 0
    default:
        preconditionFailure("pieces and whole disagree: \(fed) vs \(whole)")
    }
}

@_cdecl("FuzzStreamRequestHead_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzStreamRequestHead)
}
