import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// A Server-Sent Events response after its request: the `200` head, then events until the
/// connection closes.
///
/// The subscriptions are a `SubscriptionSet` writing in `EventFormat`: one worker's stream (the
/// response ends after its `end`), or the workers of a subscription list (the response goes on; the
/// list is fixed for the connection's life). This handler writes the head and the events as bytes
/// (no HTTP encoder: no chunked encoding, `Connection: close`), ignores what the client sends, and
/// keeps the deadlines: a `: keepalive` comment every `pingInterval`, the end of a client that
/// reads nothing for `stallTimeout`, the end at the token's expiry.
final class EventStreamSession: ChannelDuplexHandler, SubscriptionOutput, RegisteredStream {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let initial: EventStreamAcceptance.Subscriptions
    private let version: HTTPVersion
    private let gateway: GatewayContext
    private let token: AccessToken?
    private let client: String
    private var context: ChannelHandlerContext?
    private var subscriptions: SubscriptionSet?
    private var closing = false
    private var detached = false
    private(set) var isWritable = true
    private var unwritableSince: NIODeadline?
    private var lastKeepalive = NIODeadline.now()

    init(_ subscriptions: EventStreamAcceptance.Subscriptions, version: HTTPVersion, token: AccessToken?, gateway: GatewayContext, client: String) {
        self.initial = subscriptions
        self.version = version
        self.token = token
        self.gateway = gateway
        self.client = client
    }

    /// The response head: an event stream that ends when the connection closes.
    static func head(version: HTTPVersion) -> ByteBuffer {
        ByteBuffer(string: "HTTP/\(version.major).\(version.minor) 200 OK\r\n"
            + "Content-Type: text/event-stream\r\n"
            + "Cache-Control: no-cache\r\n"
            + "X-Accel-Buffering: no\r\n"
            + "X-Content-Type-Options: nosniff\r\n"
            + "Connection: close\r\n\r\n")
    }

    private var workerName: String {
        switch initial {
        case .worker(let source, _, _): source.workerID.rawValue
        case .list: "/api/streams/events (\(subscriptions?.count ?? 0) workers)"
        }
    }

    // MARK: Starting and stopping

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        context.write(wrapOutboundOut(Self.head(version: version)), promise: nil)
        gateway.registry(for: context.eventLoop).add(self)
        switch initial {
        case .worker(let source, let start, let resumed):
            let subscriptions = SubscriptionSet(format: EventFormat(singleWorkerEpoch: source.runID.epoch), output: self, token: token,
                                                loop: context.eventLoop, gateway: gateway)
            self.subscriptions = subscriptions
            subscriptions.onEnded = { [weak self] _ in self?.finish(reason: "worker stopped") }
            subscriptions.subscribe(source, replay: start, resumed: resumed)
        case .list(let list):
            let subscriptions = SubscriptionSet(format: EventFormat(singleWorkerEpoch: nil), output: self, token: token,
                                                loop: context.eventLoop, gateway: gateway)
            self.subscriptions = subscriptions
            subscriptions.subscribe(list.entries)
        }
        context.flush()
    }

    var closeFuture: EventLoopFuture<Void>? { context?.channel.closeFuture }

    func handlerRemoved(context: ChannelHandlerContext) {
        detach()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        detach()
        context.fireChannelInactive()
    }

    /// Ends the subscriptions and leaves the registry. The set stays owned until the handler goes:
    /// detaching can happen inside a call into the set (a failed write closes the connection at once,
    /// a worker's `end` finishes the response), which must not free it under its own feet; detached,
    /// it is inert.
    private func detach() {
        guard !detached, let subscriptions, let context else { return }
        detached = true
        subscriptions.removeAll()
        gateway.registry(for: context.eventLoop).remove(self)
    }

    /// Ends the response: the connection closes once what was written has gone out, or after a short
    /// wait for a client that does not read it.
    private func finish(reason: String) {
        guard let context, !closing else { return }
        closing = true
        gateway.statistics.closes(code: .normalClosure)
        gateway.log.subscriberClosed(worker: workerName, client: client, code: .normalClosure, reason: reason)
        detach()
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in loopBoundContext.value.close(promise: nil) }
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.closeGrace) { [weak self] in
            self?.context?.close(promise: nil)
        }
    }

    /// How long an ended response waits for its last bytes to go out before the connection is closed.
    static let closeGrace = TimeAmount.seconds(2)

    /// Ends the response at once (`code` is what a WebSocket would have been closed with: it is
    /// counted and logged the same way).
    func close(code: WebSocketErrorCode, reason: String) {
        guard let context, !closing else { return }
        closing = true
        gateway.statistics.closes(code: code)
        gateway.log.subscriberClosed(worker: workerName, client: client, code: code, reason: reason)
        detach()
        context.close(promise: nil)
    }

    // MARK: SubscriptionOutput

    func write(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func writeAndFlush(_ bytes: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable {
            unwritableSince = nil
            if !detached { subscriptions?.writabilityChanged() }
        } else if unwritableSince == nil {
            unwritableSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    /// What the client sends after its request is ignored (an `EventSource` sends nothing).
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: Timers

    /// Checked about once a second: token expiry, stalls, keep-alive comments, and the workers the
    /// subscribed patterns match.
    func tick(now: NIODeadline) {
        guard let context, !closing else { return }
        let configuration = gateway.configuration
        if let expiry = token?.expiresAt, Timestamp.now().microseconds / 1_000_000 >= expiry {
            close(code: .policyViolation, reason: "access token expired")
            return
        }
        if let since = unwritableSince, !isWritable, now - since >= configuration.stallTimeout {
            close(code: .tryAgainLater, reason: "stalled: no progress for \(configuration.stallTimeout.nanoseconds / 1_000_000_000) s")
            return
        }
        if now - lastKeepalive >= configuration.pingInterval {
            lastKeepalive = now
            if isWritable { context.writeAndFlush(wrapOutboundOut(EventFormat.keepalive), promise: nil) }
        }
        if !detached { subscriptions?.followPatterns() }
    }
}
