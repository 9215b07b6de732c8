import TailgateCore
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client over loopback for hand-made bytes: malformed requests, oversized heads, raw
/// WebSocket frames, and subscribers that read slowly or not at all.
///
/// With `autoRead` off it reads only when the test asks for bytes (`nextChunk`), so the kernel's receive
/// buffer (size it with `receiveBufferSize`) fills up and the server sees a slow or stalled peer.
final class RawTCPClient: Sendable {
    let channel: Channel
    private let chunks: TestInbox<ByteBuffer>
    /// Bytes received but not consumed yet by the parsing helpers.
    private let pending = Lock(ByteBuffer())
    private let autoRead: Atomic<Bool>
    /// Total bytes received.
    private let received = Atomic<Int>(0)

    private init(channel: Channel, chunks: TestInbox<ByteBuffer>, autoRead: Bool) {
        self.channel = channel
        self.chunks = chunks
        self.autoRead = Atomic(autoRead)
    }

    /// Connects to `127.0.0.1:port`.
    static func connect(port: Int, group: EventLoopGroup, receiveBufferSize: Int? = nil, autoRead: Bool = true) async throws -> RawTCPClient {
        let chunks = TestInbox<ByteBuffer>()
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: autoRead)
        if let receiveBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferSize))
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: receiveBufferSize))
        }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawBytesCollector(chunks: chunks))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawTCPClient(channel: channel, chunks: chunks, autoRead: autoRead)
    }

    /// Bytes received so far (consumed or not).
    var bytesReceived: Int { received.load(ordering: .relaxed) }

    /// Sends bytes as they are.
    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Resets the connection: closes it with `SO_LINGER` 0, so the gateway's next write fails
    /// (`ECONNRESET`/`EPIPE`).
    func reset() async {
        if let provider = channel as? SocketOptionProvider {
            try? await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close()
    }

    /// Sends a string's UTF-8 bytes.
    func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Turns reading from the socket on or off.
    func setAutoRead(_ on: Bool) async throws {
        autoRead.store(on, ordering: .relaxed)
        try await channel.setOption(.autoRead, value: on)
    }

    /// The next bytes received, `nil` at the end of the connection. With auto-read off, asks the socket
    /// for one read first.
    func nextChunk(timeout: Duration = .seconds(10)) async throws -> ByteBuffer? {
        if let chunk = chunks.poll() { return counted(chunk) }
        if !autoRead.load(ordering: .relaxed) { channel.read() }
        return try await chunks.next(timeout: timeout, what: "bytes from the server").map(counted)
    }

    private func counted(_ chunk: ByteBuffer) -> ByteBuffer {
        received.add(chunk.readableBytes, ordering: .relaxed)
        return chunk
    }

    /// Reads more bytes into the parse buffer; false at the end of the connection.
    private func fill(timeout: Duration) async throws -> Bool {
        guard var chunk = try await nextChunk(timeout: timeout) else { return false }
        pending.withLock { $0.writeBuffer(&chunk) }
        return true
    }

    /// Reads until the server closes the connection; returns every byte not consumed yet.
    func readUntilClosed(timeout: Duration = .seconds(10)) async throws -> ByteBuffer {
        while try await fill(timeout: timeout) {}
        return pending.withLock { buffer in
            defer { buffer.clear() }
            return buffer
        }
    }

    /// Reads one HTTP/1.1 response (status line, headers, a `Content-Length` body or a body up to the end
    /// of the connection). Throws `ConnectionEnded` when the connection ends before a response head.
    func readHTTPResponse(timeout: Duration = .seconds(10), bodyless: Bool = false) async throws -> HTTPTestResponse {
        var head: (status: Int, headers: [(String, String)])?
        while head == nil {
            head = pending.withLock { buffer in HTTPTestResponse.parseHead(&buffer) }
            if head == nil, try await !fill(timeout: timeout) { throw ConnectionEnded(waitingFor: "an HTTP response") }
        }
        let response = HTTPTestResponse(status: head!.status, headers: head!.headers, body: ByteBuffer())
        if bodyless || response.status == 101 || response.status == 304 || response.status == 204 { return response }
        if let length = response.header("content-length").flatMap(Int.init) {
            while pending.withLock({ $0.readableBytes }) < length {
                if try await !fill(timeout: timeout) { throw ConnectionEnded(waitingFor: "an HTTP body") }
            }
            let body = pending.withLock { $0.readSlice(length: length)! }
            return HTTPTestResponse(status: response.status, headers: response.headers, body: body)
        }
        return HTTPTestResponse(status: response.status, headers: response.headers, body: try await readUntilClosed(timeout: timeout))
    }

    /// Reads one WebSocket frame sent by the server; `nil` when the connection ends first.
    func readFrame(timeout: Duration = .seconds(10)) async throws -> ServerFrame? {
        while true {
            if let frame = try pending.withLock({ buffer in try ServerFrame.parse(&buffer) }) { return frame }
            if try await !fill(timeout: timeout) { return nil }
        }
    }

    /// Drops the connection.
    func close() async {
        try? await channel.close()
    }
}

/// A WebSocket frame as the server sent it.
struct ServerFrame: Sendable {
    var fin: Bool
    var rsv: UInt8
    var opcode: UInt8
    var masked: Bool
    var payload: ByteBuffer

    var isText: Bool { opcode == 0x1 }
    var isClose: Bool { opcode == 0x8 }
    var isPong: Bool { opcode == 0xA }
    var text: String { String(buffer: payload) }
    /// The status code of a close frame.
    var closeCode: UInt16? { isClose ? payload.getInteger(at: payload.readerIndex, as: UInt16.self) : nil }

    struct Malformed: Error {}

    /// Takes one complete frame from the front of `buffer`, or returns `nil` (consuming nothing) when it
    /// is not all there yet.
    static func parse(_ buffer: inout ByteBuffer) throws -> ServerFrame? {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= 2, let first = buffer.getInteger(at: start, as: UInt8.self),
              let second = buffer.getInteger(at: start + 1, as: UInt8.self) else { return nil }
        var headerLength = 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            length = Int(extended)
            headerLength += 2
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            guard extended < 1 << 40 else { throw Malformed() }
            length = Int(extended)
            headerLength += 8
        }
        let masked = second & 0x80 != 0
        if masked { headerLength += 4 }
        guard buffer.readableBytes >= headerLength + length else { return nil }
        var maskKey: [UInt8] = []
        if masked { maskKey = buffer.getBytes(at: start + headerLength - 4, length: 4)! }
        buffer.moveReaderIndex(forwardBy: headerLength)
        var payload = buffer.readSlice(length: length)!
        if masked {
            var bytes = payload.readBytes(length: length)!
            for index in bytes.indices { bytes[index] ^= maskKey[index % 4] }
            payload = ByteBuffer(bytes: bytes)
        }
        return ServerFrame(fin: first & 0x80 != 0, rsv: (first >> 4) & 0x7, opcode: first & 0x0F, masked: masked, payload: payload)
    }
}

/// Builds frames as a client would send them (or, for tests, as it should not).
enum ClientFrames {
    /// A frame with `opcode` and `payload`; masked with a fixed key unless `masked` is false.
    static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true, masked: Bool = true, rsv1: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(maskBit | 126)
            bytes.append(UInt8(payload.count >> 8))
            bytes.append(UInt8(payload.count & 0xFF))
        } else {
            bytes.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        if masked {
            let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
            bytes.append(contentsOf: key)
            bytes.append(contentsOf: payload.enumerated().map { $0.element ^ key[$0.offset % 4] })
        } else {
            bytes.append(contentsOf: payload)
        }
        return bytes
    }

    /// A masked close frame with `code`.
    static func close(code: UInt16) -> [UInt8] {
        frame(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)])
    }
}

/// Queues every chunk of bytes the connection receives.
private final class RawBytesCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let chunks: TestInbox<ByteBuffer>

    init(chunks: TestInbox<ByteBuffer>) { self.chunks = chunks }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        chunks.push(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        chunks.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        chunks.finish()
        context.close(promise: nil)
    }
}
