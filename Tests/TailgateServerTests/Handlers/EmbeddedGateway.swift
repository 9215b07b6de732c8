import NIOCore
import NIOEmbedded
import NIOHTTP1
import TailgateCore
import Testing
@testable import TailgateServer

/// A gateway's shared state on an `EmbeddedEventLoop`, for testing its handlers one at a time on
/// `EmbeddedChannel`s (no sockets, no threads: the test drives the loop).
final class EmbeddedGateway {
    let loop = EmbeddedEventLoop()
    let bus: LogBus
    let context: GatewayContext

    init(configure: (inout ServerConfiguration) -> Void = { _ in }, bus busConfiguration: BusConfiguration = BusConfiguration()) throws {
        var configuration = ServerConfiguration()
        configuration.publicDirectory = "/nonexistent/tailgate-tests-public"
        configure(&configuration)
        try configuration.validate()
        bus = try LogBus(configuration: busConfiguration, eventLoopGroup: loop)
        context = GatewayContext(configuration: configuration, bus: bus, statistics: GatewayStatistics(), staticFiles: nil,
                                 registries: [SessionRegistry(loop: loop)], listeningHost: "127.0.0.1:8080")
    }

    /// A new connection from `address`, with the gateway's HTTP pipeline (`ConnectionPipeline`).
    func connection(from address: String = "127.0.0.1") throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: address, port: 40_000)).wait()
        try ConnectionPipeline.configure(channel, gateway: context)
        return channel
    }

    /// Runs what is due on the loop: drains, fan-out, deferred handler removals.
    func pump(_ time: TimeAmount = .milliseconds(5)) {
        loop.advanceTime(by: time)
    }
}

extension EmbeddedChannel {
    /// Sends `text` (a request, with `\r\n` line ends) as one read.
    func send(_ text: String) throws {
        try writeInbound(ByteBuffer(string: text))
    }

    /// Everything written and flushed to the connection so far, as one buffer.
    func written() throws -> ByteBuffer {
        var all = ByteBuffer()
        while let part = try readOutbound(as: IOData.self) {
            switch part {
            case .byteBuffer(var buffer): all.writeBuffer(&buffer)
            case .fileRegion: Issue.record("unexpected file region")
            }
        }
        return all
    }
}

/// An HTTP response read from a connection's bytes.
struct WrittenResponse {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The `code` of a JSON error body.
    var errorCode: String? {
        guard let range = body.range(of: "\"code\":\"") else { return nil }
        return String(body[range.upperBound...].prefix { $0 != "\"" })
    }

    /// Reads one response from the front of `buffer` (body by Content-Length), leaving the rest.
    static func read(from buffer: inout ByteBuffer) -> WrittenResponse? {
        let text = String(buffer: buffer)
        guard let end = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<end.lowerBound].split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
        let headLength = text[..<end.upperBound].utf8.count
        let bodyLength = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        buffer.moveReaderIndex(forwardBy: headLength)
        let body = buffer.readString(length: min(bodyLength, buffer.readableBytes)) ?? ""
        return WrittenResponse(status: status, headers: headers, body: body)
    }
}

/// A frame the server wrote.
struct WrittenFrame: Equatable {
    var opcode: UInt8
    var payload: [UInt8]

    var text: String { String(decoding: payload, as: UTF8.self) }
    /// The close code of a close frame.
    var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }

    /// Every complete frame in `buffer` (server frames: unmasked).
    static func readAll(from buffer: inout ByteBuffer) -> [WrittenFrame] {
        var frames: [WrittenFrame] = []
        while buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let first = buffer.readInteger(as: UInt8.self)!
            var length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
            if length == 126 { length = Int(buffer.readInteger(as: UInt16.self) ?? 0) }
            else if length == 127 { length = Int(buffer.readInteger(as: UInt64.self) ?? 0) }
            guard let payload = buffer.readBytes(length: length) else {
                buffer.moveReaderIndex(to: start)
                break
            }
            frames.append(WrittenFrame(opcode: first & 0x0F, payload: payload))
        }
        return frames
    }
}

/// A client frame: masked, as RFC 6455 requires.
func clientFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true, mask: [UInt8] = [1, 2, 3, 4], rsv1: Bool = false) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeInteger((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode)
    if payload.count < 126 {
        buffer.writeInteger(0x80 | UInt8(payload.count))
    } else {
        buffer.writeInteger(UInt8(0x80 | 126))
        buffer.writeInteger(UInt16(payload.count))
    }
    buffer.writeBytes(mask)
    buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
    return buffer
}

/// A WebSocket upgrade request for `path`.
func upgradeRequest(_ path: String, extraHeaders: String = "") -> String {
    "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extraHeaders)\r\n"
}
