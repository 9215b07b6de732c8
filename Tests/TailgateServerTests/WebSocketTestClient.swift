import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TailgateCore

/// What a `WebSocketTestClient` saw, in order.
enum WebSocketEvent: Sendable, CustomStringConvertible {
    case text(String)
    case binary(ByteBuffer)
    case ping(ByteBuffer)
    case pong(ByteBuffer)
    /// The server's close frame (`code` is nil when the frame had no payload).
    case close(code: UInt16?, reason: String)

    var description: String {
        switch self {
        case .text(let text): "text(\(text.prefix(200)))"
        case .binary(let bytes): "binary(\(bytes.readableBytes) bytes)"
        case .ping(let bytes): "ping(\(String(buffer: bytes)))"
        case .pong(let bytes): "pong(\(String(buffer: bytes)))"
        case .close(let code, let reason): "close(\(code.map(String.init) ?? "none"), \(reason))"
        }
    }
}

/// The server answered the upgrade request with something other than `101 Switching Protocols`.
struct WebSocketRefused: Error, CustomStringConvertible {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: String
    var description: String { "upgrade refused: \(status.code) \(body)" }
}

/// The connection ended before an expected message.
struct ConnectionEnded: Error, CustomStringConvertible {
    var waitingFor: String
    var description: String { "the connection ended while waiting for \(waitingFor)" }
}

/// A real WebSocket client over loopback TCP: SwiftNIO's `ClientBootstrap`, HTTP/1 client handlers and
/// `NIOWebSocketClientUpgrader`. Every frame the server sends is queued as a `WebSocketEvent`; pings are
/// answered automatically, and the server's close frame is echoed as RFC 6455 asks.
final class WebSocketTestClient: Sendable {
    let channel: Channel
    /// The response head of the upgrade (`101`).
    let upgradeResponse: HTTPResponseHead
    private let events: TestInbox<WebSocketEvent>

    private init(channel: Channel, upgradeResponse: HTTPResponseHead, events: TestInbox<WebSocketEvent>) {
        self.channel = channel
        self.upgradeResponse = upgradeResponse
        self.events = events
    }

    /// Connects to `127.0.0.1:port`, asks to upgrade `path` and returns once upgraded. Throws
    /// `WebSocketRefused` with the status and body when the server refuses.
    static func connect(
        port: Int, path: String, headers: [(String, String)] = [], hostHeader: String? = nil,
        group: EventLoopGroup, timeout: Duration = .seconds(10)
    ) async throws -> WebSocketTestClient {
        let events = TestInbox<WebSocketEvent>()
        let outcome = TestInbox<Result<HTTPResponseHead, any Error>>()
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let watcher = UpgradeOutcomeHandler(outcome: outcome)
                    let boundWatcher = NIOLoopBound(watcher, eventLoop: channel.eventLoop)
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: 1 << 26, automaticErrorHandling: false
                    ) { channel, response in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(WebSocketEventCollector(events: events))
                            outcome.push(.success(response))
                        }
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in
                            boundWatcher.value.upgraded = true
                        }))
                    try channel.pipeline.syncOperations.addHandler(watcher)
                }
            }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: hostHeader ?? "127.0.0.1:\(port)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        do {
            guard let result = try await outcome.next(timeout: timeout, what: "the upgrade response of \(path)") else {
                throw ConnectionEnded(waitingFor: "the upgrade response")
            }
            return WebSocketTestClient(channel: channel, upgradeResponse: try result.get(), events: events)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// The next frame from the server; `nil` when the connection has ended.
    func nextEvent(timeout: Duration = .seconds(10)) async throws -> WebSocketEvent? {
        try await events.next(timeout: timeout, what: "a frame from the server")
    }

    /// The next data message as JSON; throws when a close frame or the end of the connection comes first.
    func nextMessage(timeout: Duration = .seconds(10)) async throws -> JSONValue {
        while true {
            guard let event = try await nextEvent(timeout: timeout) else { throw ConnectionEnded(waitingFor: "a message") }
            switch event {
            case .text(let text):
                return try JSONParser.parse(text)
            case .ping, .pong:
                continue
            case .binary, .close:
                throw UnexpectedEvent(event: event)
            }
        }
    }

    /// Reads until the server's close frame and returns its code (skipping data messages); `nil` when
    /// the connection ended without one.
    func closeCode(timeout: Duration = .seconds(10)) async throws -> UInt16?? {
        while let event = try await nextEvent(timeout: timeout) {
            if case .close(let code, _) = event { return .some(code) }
        }
        return .none
    }

    /// Sends a (masked) frame.
    func send(_ opcode: WebSocketOpcode, _ payload: ByteBuffer, fin: Bool = true) async throws {
        let frame = WebSocketFrame(fin: fin, opcode: opcode, maskKey: .random(), data: payload)
        try await channel.writeAndFlush(frame)
    }

    /// Sends a text frame.
    func send(text: String) async throws {
        try await send(.text, ByteBuffer(string: text))
    }

    /// Starts the closing handshake with `code`.
    func sendClose(code: UInt16 = 1000) async throws {
        var payload = ByteBuffer()
        payload.writeInteger(code)
        try await send(.connectionClose, payload)
    }

    /// Waits until the TCP connection is closed (by either side).
    func waitUntilClosed(timeout: Duration = .seconds(10)) async throws {
        while try await nextEvent(timeout: timeout) != nil {}
    }

    /// Drops the TCP connection without a closing handshake.
    func closeAbruptly() async {
        try? await channel.close()
    }
}

/// A frame other than the one a test expected.
struct UnexpectedEvent: Error, CustomStringConvertible {
    var event: WebSocketEvent
    var description: String { "unexpected \(event)" }
}

/// Sits after the HTTP client upgrade handler: reports a refused upgrade (status and body) or a failed
/// connection, then lets WebSocket traffic pass once upgraded.
private final class UpgradeOutcomeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let outcome: TestInbox<Result<HTTPResponseHead, any Error>>
    var upgraded = false
    private var refusedHead: HTTPResponseHead?
    private var body = ByteBuffer()

    init(outcome: TestInbox<Result<HTTPResponseHead, any Error>>) { self.outcome = outcome }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if upgraded {
            context.fireChannelRead(data)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            refusedHead = head
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            if let head = refusedHead {
                outcome.push(.failure(WebSocketRefused(status: head.status, headers: head.headers, body: String(buffer: body))))
            }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !upgraded { outcome.push(.failure(error)) }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !upgraded { outcome.push(.failure(ConnectionEnded(waitingFor: "the upgrade response"))) }
        context.fireChannelInactive()
    }
}

/// After the upgrade: queues every frame (messages reassembled), answers pings, echoes the close frame.
private final class WebSocketEventCollector: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let events: TestInbox<WebSocketEvent>
    private var fragments: ByteBuffer?
    private var fragmentOpcode = WebSocketOpcode.text
    private var sentClose = false

    init(events: TestInbox<WebSocketEvent>) { self.events = events }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text, .binary, .continuation:
            if frame.opcode != .continuation { fragmentOpcode = frame.opcode; fragments = ByteBuffer() }
            fragments?.writeBuffer(&payload)
            guard frame.fin, let message = fragments else { return }
            fragments = nil
            events.push(fragmentOpcode == .text ? .text(String(buffer: message)) : .binary(message))
        case .ping:
            events.push(.ping(payload))
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: payload)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            events.push(.pong(payload))
        case .connectionClose:
            let code = payload.readInteger(as: UInt16.self)
            let reason = payload.readString(length: payload.readableBytes) ?? ""
            events.push(.close(code: code, reason: reason))
            if !sentClose {
                sentClose = true
                var echo = ByteBuffer()
                if let code { echo.writeInteger(code) }
                let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)
                context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            }
        default:
            events.push(.binary(payload))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        events.finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        events.finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        events.finish()
        context.close(promise: nil)
    }
}
