import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// One connection's HTTP request/response cycle: asks the `Router` what each request is, writes the
/// answers, publishes ingest bodies (reading no faster than the worker drains), switches an accepted
/// stream request to a stream, and keeps the connection's deadlines (request head, keep-alive).
/// Removed when the connection becomes a stream.
final class HTTPRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let gateway: GatewayContext
    private let connection: ConnectionState
    private let router: Router
    private let upgrade: StreamUpgrade
    private var context: ChannelHandlerContext?
    private var timeout: Scheduled<Void>?
    private var closeAfterResponse = false

    /// The request being received and what the router decided for it.
    private var request: HTTPRequestHead?
    private var decision: RouteDecision?
    /// The rest of this request's body is ignored (it was refused already).
    private var discardingBody = false

    /// The body being published (`POST /api/workers/{id}/records`).
    private var ingest: IngestSession?
    /// The ingest body has ended; the summary is sent once its last lines are published.
    private var ingestEnded = false
    /// Reads are held back until the ingest worker's queue drains.
    private var readsPaused = false
    private var readPending = false

    init(gateway: GatewayContext, connection: ConnectionState, upgrade: StreamUpgrade) {
        self.gateway = gateway
        self.connection = connection
        self.router = Router(gateway: gateway)
        self.upgrade = upgrade
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armTimeout(context: context, after: gateway.configuration.handshakeTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        self.context = nil
    }

    /// Closes the connection after `delay` unless another request part arrives first.
    private func armTimeout(context: ChannelHandlerContext, after delay: TimeAmount) {
        timeout?.cancel()
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: delay) {
            loopBoundContext.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            timeout?.cancel()
            timeout = nil
            request = head
            begin(head, decision: router.decide(head, connection: connection), context: context)
        case .body(var buffer):
            guard let ingest, !discardingBody else { return }
            let limit = gateway.ingestQueueLimit
            if !ingest.consume(&buffer, queueLimit: limit) || ingest.worker.queuedCount >= limit {
                pauseReads(context: context)
            }
        case .end:
            guard let head = request else { return }
            if discardingBody {
                discardingBody = false
                request = nil
                return
            }
            if ingest != nil {
                ingestEnded = true
                finishIngestIfDone(context: context)
                return
            }
            request = nil
            let decided = decision
            decision = nil
            switch decided {
            case .respond(let response):
                write(response, for: head, context: context)
            case .upgrade(let acceptance):
                startStream(acceptance, head: head, context: context)
            case .refuseNow, .ingest, nil:
                break
            }
        }
    }

    private func begin(_ head: HTTPRequestHead, decision: RouteDecision, context: ChannelHandlerContext) {
        switch decision {
        case .ingest(let session):
            ingest = session
            ingestEnded = false
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        case .refuseNow(let error):
            discardingBody = true
            closeAfterResponse = true
            write(.error(error), for: head, context: context)
        case .respond, .upgrade:
            self.decision = decision
        }
    }

    // MARK: Streams

    private func startStream(_ acceptance: StreamAcceptance, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        StreamUpgrade.responseHeaders(for: acceptance, head: head, channel: context.channel).whenComplete { result in
            let (handler, context) = loopBound.value
            do {
                try handler.upgrade.perform(acceptance, responseHeaders: try result.get(), version: head.version,
                                            httpContext: context, gateway: handler.gateway)
            } catch {
                handler.write(.error(StreamEndpoint.handshakeFailed), for: head, context: context)
            }
        }
    }

    // MARK: Ingest

    private func finishIngestIfDone(context: ChannelHandlerContext) {
        guard let session = ingest, ingestEnded, !session.isHoldingInput, let head = request else { return }
        session.finish()
        ingest = nil
        ingestEnded = false
        request = nil
        write(.json(session.summary()), for: head, context: context)
    }

    private func pauseReads(context: ChannelHandlerContext) {
        guard !readsPaused else { return }
        readsPaused = true
        gateway.statistics.ingestPauses.add(1, ordering: .relaxed)
        waitForQueue(context: context)
    }

    /// Resumes reading when the worker's drain has taken its queue below half the limit.
    private func waitForQueue(context: ChannelHandlerContext) {
        guard let session = ingest else { return }
        let loopBound = NIOLoopBound((self, session), eventLoop: context.eventLoop)
        session.worker.whenQueueBelow(gateway.ingestQueueLimit / 2, on: context.eventLoop).whenSuccess {
            let (handler, session) = loopBound.value
            handler.queueDrained(session)
        }
    }

    private func queueDrained(_ session: IngestSession) {
        guard let context, readsPaused, session === ingest else { return }
        if session.isHoldingInput && !session.resume(queueLimit: gateway.ingestQueueLimit) {
            waitForQueue(context: context)
            return
        }
        readsPaused = false
        finishIngestIfDone(context: context)
        if readPending {
            readPending = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    // MARK: Responses

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        if response.status.code >= 400 { gateway.statistics.refusals.add(1, ordering: .relaxed) }
        var headers = response.headers
        // After an upgrade request the HTTP parser stops: a refused upgrade ends the connection.
        let keepAlive = request.isKeepAlive && !closeAfterResponse && request.headers["upgrade"].isEmpty
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && response.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if keepAlive {
            armTimeout(context: context, after: gateway.configuration.keepAliveTimeout)
        } else {
            let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in loopBoundContext.value.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else {
            context.close(promise: nil)
            return
        }
        let refusal: GatewayError
        if case .headerOverflow = parserError {
            refusal = GatewayError(.init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                                   "headers_too_large",
                                   "the request head is larger than \(gateway.configuration.maxHeaderBytes) bytes")
        } else {
            refusal = GatewayError(.badRequest, "bad_request", "malformed HTTP request (\(parserError))")
        }
        closeAfterResponse = true
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["connection": "close"])
        write(.error(refusal), for: head, context: context)
    }
}
