import NIOCore
import NIOWebSocket
import TailgateCore

/// A `/ws/streams` socket after the upgrade: many workers' streams on one WebSocket, subscribed and
/// unsubscribed by the client's messages.
///
/// The subscriptions are a `SubscriptionSet` writing in `NamedFrameFormat` (every message names its
/// worker). This handler speaks the WebSocket side: the client's frames (subscribe/unsubscribe
/// messages, pings, close), keep-alive pings, stalls, token expiry, shutdown. It writes framed bytes
/// itself (there is no frame encoder in the pipeline) and sits last in the pipeline, after the frame
/// decoder. While the socket is not writable it reads no more of the client's messages, so a client
/// that sends and does not read cannot make the gateway buffer answers without end.
final class MultiplexSession: ChannelDuplexHandler, SubscriptionOutput, RegisteredStream, StreamWriting {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let initial: SubscriptionList
    private let deflate: NamedFrameFormat.DeflateSettings?
    private let gateway: GatewayContext
    private let token: AccessToken?
    private let client: String
    private var inbound: InboundMessages
    private var context: ChannelHandlerContext?
    var channelContext: ChannelHandlerContext? { context }
    private var subscriptions: SubscriptionSet?
    private var closing = false
    private var detached = false
    /// Complete messages received and not handled yet: while the socket is not writable (or while
    /// messages are being handled) they wait here; the socket is not read meanwhile, so at most one
    /// read's worth waits.
    private var pendingMessages: [(message: ByteBuffer, isText: Bool)] = []
    private var pendingHead = 0
    private var handlingMessages = false
    private(set) var isWritable = true
    private var readPending = false
    private var unwritableSince: NIODeadline?
    private var lastInbound = NIODeadline.now()
    private var pingSentAt: NIODeadline?
    /// Every write goes through it: live batches straight to the socket once the stream has settled.
    @exclusivity(unchecked) var writer: StreamWriter
    var statistics: GatewayStatistics { gateway.statistics }

    /// The largest message a client may send on `/ws/streams`.
    static let maxInboundMessageBytes = 64 << 10

    init(subscriptions initial: SubscriptionList, deflate: PerMessageDeflateParameters?, token: AccessToken?, gateway: GatewayContext, client: String) {
        self.initial = initial
        self.gateway = gateway
        self.token = token
        self.client = client
        let configuration = gateway.configuration
        self.deflate = deflate.map {
            NamedFrameFormat.DeflateSettings(windowBits: $0.serverMaxWindowBits, threshold: configuration.deflateThreshold,
                                             pool: gateway.deflaters, statistics: gateway.statistics)
        }
        inbound = InboundMessages(maxBytes: Self.maxInboundMessageBytes, deflate: deflate, keepsMessages: true)
        writer = StreamWriter(directWrites: configuration.directWrites)
    }

    // MARK: Starting and stopping

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        let subscriptions = SubscriptionSet(format: NamedFrameFormat(deflate: deflate), output: self, token: token,
                                            loop: context.eventLoop, gateway: gateway)
        self.subscriptions = subscriptions
        gateway.registry(for: context.eventLoop).add(self)
        subscriptions.subscribe(initial.entries)
        // The 101 answer waits in the pipeline for this first flush.
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
    /// detaching can happen inside a call into the set (a failed write closes the connection at once),
    /// which must not free it under its own feet; detached, it is inert.
    private func detach() {
        guard !detached, let subscriptions, let context else { return }
        detached = true
        subscriptions.removeAll()
        pendingMessages.removeAll()
        pendingHead = 0
        gateway.registry(for: context.eventLoop).remove(self)
    }

    /// Sends a close frame with `code` and `reason`, then closes the connection once the client
    /// answers (or after a short wait).
    func close(code: WebSocketErrorCode, reason: String) {
        guard let context, !closing else { return }
        closing = true
        let workers = subscriptions?.count ?? 0
        detach()
        gateway.statistics.closes(code: code)
        gateway.log.subscriberClosed(worker: "/ws/streams (\(workers) workers)", client: client, code: code, reason: reason)
        writeThroughNIO(ServerFrames.close(code: code, reason: reason), flush: true, context: context)
        scheduleForcedClose(context)
    }

    /// Closes the connection after a short wait, if the client has not let its close go out by then.
    private func scheduleForcedClose(_ context: ChannelHandlerContext) {
        context.eventLoop.assumeIsolated().scheduleTask(in: EventStreamSession.closeGrace) { [weak self] in
            self?.context?.close(promise: nil)
        }
    }

    // MARK: SubscriptionOutput

    func write(_ bytes: ByteBuffer) {
        guard let context else { return }
        writeThroughNIO(bytes, flush: false, context: context)
    }

    func flush() {
        context?.flush()
    }

    func writeAndFlush(_ bytes: ByteBuffer) {
        writeLive(bytes)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable {
            unwritableSince = nil
            if !detached { subscriptions?.writabilityChanged() }
            handlePendingMessages()
            if isWritable, readPending {
                readPending = false
                context.read()
            }
        } else if unwritableSince == nil {
            unwritableSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Holds back reading while the socket is not writable.
    func read(context: ChannelHandlerContext) {
        if (isWritable && pendingHead >= pendingMessages.count) || closing {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastInbound = .now()
        switch ClientFrame.classify(frame) {
        case .violation(let code, let reason):
            close(code: code, reason: reason)
        case .ping(let pong):
            writeThroughNIO(pong, flush: true, context: context)
        case .pong:
            pingSentAt = nil
        case .close(let reply, let refused):
            answerClose(reply: reply, refused: refused, context: context)
        case .data:
            guard !closing else { return }
            if case .close(let code, let reason) = inbound.receive(frame) {
                close(code: code, reason: reason)
                return
            }
            if frame.fin && inbound.lastWasCompressed { gateway.statistics.inflatedMessages.add(1, ordering: .relaxed) }
            if let (message, isText) = inbound.takeMessage() {
                pendingMessages.append((message, isText))
                handlePendingMessages()
            }
        }
    }

    /// Answers a client's close frame with `reply` (its code echoed, or `refused` with a reason).
    private func answerClose(reply: ByteBuffer, refused: WebSocketErrorCode?, context: ChannelHandlerContext) {
        if closing {
            context.close(promise: nil)
            return
        }
        if let refused { gateway.statistics.closes(code: refused) }
        closing = true
        detach()
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in loopBoundContext.value.close(promise: nil) }
        writeThroughNIO(reply, flush: true, context: context, promise: written)
        scheduleForcedClose(context)
    }

    /// Handles the messages received, in order, while the socket is writable: a client that sends
    /// and does not read has its messages wait (and the socket unread) rather than its answers
    /// buffered. A message received while one is being handled (a write can make NIO read the
    /// socket) waits for it.
    private func handlePendingMessages() {
        guard !handlingMessages else { return }
        handlingMessages = true
        defer { handlingMessages = false }
        while isWritable, !closing, !detached, pendingHead < pendingMessages.count {
            let (message, isText) = pendingMessages[pendingHead]
            pendingHead += 1
            handle(message, isText: isText)
        }
        if pendingHead >= pendingMessages.count {
            pendingMessages.removeAll(keepingCapacity: pendingMessages.count <= 16)
            pendingHead = 0
            if readPending, isWritable, !closing, let context {
                readPending = false
                context.read()
            }
        }
    }

    /// Acts on one complete message: subscribe or unsubscribe; anything else closes with 1007.
    private func handle(_ message: ByteBuffer, isText: Bool) {
        guard let subscriptions, !detached else { return }
        guard isText else {
            close(code: .dataInconsistentWithMessage, reason: "messages must be JSON text")
            return
        }
        do {
            switch try SubscriptionMessage.parse(message) {
            case .subscribe(let selectors, let start):
                subscriptions.subscribe(selectors.map { ($0, start) })
            case .unsubscribe(let selectors):
                for selector in selectors { subscriptions.unsubscribe(selector) }
            }
            subscriptions.flush()
        } catch {
            close(code: .dataInconsistentWithMessage, reason: "bad message: \(error.reason)")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            close(code: .messageTooLarge, reason: "inbound messages are limited to \(Self.maxInboundMessageBytes) bytes")
        case is NIOWebSocketError:
            close(code: .protocolError, reason: "invalid frame")
        default:
            context.close(promise: nil)
        }
    }

    // MARK: Timers

    /// Checked about once a second: token expiry, stalls, keep-alive pings, and the workers the
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
        if let sent = pingSentAt {
            if now - sent >= configuration.pongTimeout {
                close(code: .tryAgainLater, reason: "no pong within \(configuration.pongTimeout.nanoseconds / 1_000_000_000) s")
                return
            }
        } else if now - lastInbound >= configuration.pingInterval {
            pingSentAt = now
            writeThroughNIO(ServerFrames.frame(.ping, payload: ByteBuffer()), flush: true, context: context)
        }
        if !detached { subscriptions?.followPatterns() }
    }
}
