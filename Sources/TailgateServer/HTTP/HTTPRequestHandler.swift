import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// One connection's HTTP request/response cycle: asks the `Router` what each request is, writes the
/// answers, publishes ingest bodies (reading no faster than the worker drains), switches an accepted
/// stream request to a stream, and keeps the connection's deadlines: the request head
/// (`handshakeTimeout`, which covers a WebSocket handshake), the rest of a request once its head has
/// come (`requestBodyTimeout`), a publisher's silence (`publisherIdleTimeout`, not counted while the
/// gateway itself holds back reading) and the wait for the next request (`keepAliveTimeout`).
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
    /// What the armed timeout guards.
    private var deadline = Deadline.head
    /// When the ingest body last brought bytes.
    private var lastBodyRead = NIODeadline.now()

    private enum Deadline {
        /// The request head (or the next one, on a kept-alive connection): close silently.
        case head
        /// The rest of a request whose head has come: 408.
        case body
        /// An ingest body's next bytes: 408 when the publisher has been silent for the whole time.
        case publisherIdle
    }
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

    /// What the router decided for the connection's first request, when that was decided before this
    /// handler was added (`StreamHandshakeHandler`); taken by the first head.
    private var firstDecision: RouteDecision?
    /// When the first head must have come, when its deadline started before this handler was added.
    private let headDeadline: NIODeadline?

    init(gateway: GatewayContext, connection: ConnectionState, upgrade: StreamUpgrade,
         firstDecision: RouteDecision? = nil, headDeadline: NIODeadline? = nil) {
        self.gateway = gateway
        self.connection = connection
        self.router = Router(gateway: gateway)
        self.upgrade = upgrade
        self.firstDecision = firstDecision
        self.headDeadline = headDeadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let delay = headDeadline.map { $0 - context.eventLoop.now } ?? gateway.configuration.handshakeTimeout
        armTimeout(.head, context: context, after: delay)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        ingest?.close()
        self.context = nil
    }

    /// Acts on `deadline` after `delay` unless something disarms it first.
    private func armTimeout(_ deadline: Deadline, context: ChannelHandlerContext, after delay: TimeAmount) {
        timeout?.cancel()
        self.deadline = deadline
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.timeout = nil
            handler.timedOut(context: context)
        }
    }

    private func disarmTimeout() {
        timeout?.cancel()
        timeout = nil
    }

    private func timedOut(context: ChannelHandlerContext) {
        let configuration = gateway.configuration
        switch deadline {
        case .head:
            context.close(promise: nil)
        case .body:
            refuseAndClose(GatewayError(.requestTimeout, "request_timeout",
                                        "the request did not arrive whole within \(Self.seconds(configuration.requestBodyTimeout)) s"),
                           context: context)
        case .publisherIdle:
            let silent = context.eventLoop.now - lastBodyRead
            if readsPaused {
                // The gateway holds back reading, the publisher is not silent: look again later.
                armTimeout(.publisherIdle, context: context, after: configuration.publisherIdleTimeout)
            } else if silent < configuration.publisherIdleTimeout {
                armTimeout(.publisherIdle, context: context, after: configuration.publisherIdleTimeout - silent)
            } else {
                gateway.statistics.idlePublisherCloses.add(1, ordering: .relaxed)
                refuseAndClose(GatewayError(.requestTimeout, "publisher_idle",
                                            "no bytes for \(Self.seconds(configuration.publisherIdleTimeout)) s; the lines published so far are kept"),
                               context: context)
            }
        }
    }

    /// Answers the request in progress with `error` and closes the connection.
    private func refuseAndClose(_ error: GatewayError, context: ChannelHandlerContext) {
        guard let head = request else {
            context.close(promise: nil)
            return
        }
        request = nil
        ingest?.close()
        ingest = nil
        decision = nil
        discardingBody = true
        closeAfterResponse = true
        write(.error(error), for: head, context: context)
    }

    private static func seconds(_ amount: TimeAmount) -> Int64 { amount.nanoseconds / 1_000_000_000 }

    func channelReadComplete(context: ChannelHandlerContext) {
        // A request whose head came but whose end has not gets a deadline for the rest; an ingest body one
        // for its publisher's silence. Complete requests, the usual case, arm nothing.
        if request != nil && timeout == nil && !discardingBody {
            if ingest != nil {
                armTimeout(.publisherIdle, context: context, after: gateway.configuration.publisherIdleTimeout)
            } else {
                armTimeout(.body, context: context, after: gateway.configuration.requestBodyTimeout)
            }
        }
        context.fireChannelReadComplete()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            disarmTimeout()
            request = head
            lastBodyRead = context.eventLoop.now
            let decision: RouteDecision
            if let decided = firstDecision {
                firstDecision = nil
                decision = decided
            } else {
                decision = router.decide(head, connection: connection)
            }
            begin(head, decision: decision, context: context)
        case .body(var buffer):
            guard let ingest, !discardingBody else { return }
            lastBodyRead = context.eventLoop.now
            let limit = gateway.ingestQueueLimit
            if !ingest.consume(&buffer, queueLimit: limit) || ingest.worker.queuedCount >= limit {
                pauseReads(context: context)
            }
        case .end:
            disarmTimeout()
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
            case .multiplex(let acceptance):
                startMultiplex(acceptance, head: head, context: context)
            case .events(let acceptance):
                startEventStream(acceptance, head: head, context: context)
            case .export(let export):
                startExport(export, for: head, context: context)
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
        case .respond, .upgrade, .multiplex, .events, .export:
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
                                            httpContext: context, gateway: handler.gateway,
                                            client: handler.clientAddress(head))
            } catch {
                handler.write(.error(StreamEndpoint.handshakeFailed), for: head, context: context)
            }
        }
    }

    private func startMultiplex(_ acceptance: MultiplexAcceptance, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        StreamUpgrade.handshake.buildUpgradeResponse(channel: context.channel, upgradeRequest: head, initialResponseHeaders: HTTPHeaders())
            .whenComplete { result in
                let (handler, context) = loopBound.value
                do {
                    var headers = try result.get()
                    headers.add(contentsOf: acceptance.responseHeaders)
                    let session = MultiplexSession(subscriptions: acceptance.subscriptions, deflate: acceptance.deflate, token: acceptance.token,
                                                   gateway: handler.gateway, client: acceptance.client.address)
                    try handler.upgrade.switchToWebSocket(responseHeaders: headers, version: head.version, httpContext: context,
                                                          maxFrameSize: MultiplexSession.maxInboundMessageBytes, session: session,
                                                          statistics: handler.gateway.statistics)
                } catch {
                    handler.write(.error(StreamEndpoint.handshakeFailed), for: head, context: context)
                }
            }
    }

    private func startEventStream(_ acceptance: EventStreamAcceptance, head: HTTPRequestHead, context: ChannelHandlerContext) {
        disarmTimeout()
        let session = EventStreamSession(acceptance.subscriptions, version: head.version, token: acceptance.token,
                                         gateway: gateway, client: acceptance.client.address)
        do {
            try upgrade.switchToEventStream(httpContext: context, session: session, statistics: gateway.statistics)
        } catch {
            context.close(promise: nil)
        }
    }

    // MARK: Ingest

    private func finishIngestIfDone(context: ChannelHandlerContext) {
        guard let session = ingest, ingestEnded, !session.isHoldingInput, let head = request else { return }
        disarmTimeout()
        session.finish()
        session.close()
        if session.rejected > 0 {
            gateway.log.ingestErrors(worker: session.worker.id.description, client: clientAddress(head),
                                     rejected: session.rejected, accepted: session.accepted,
                                     first: session.errors.first.map { ($0.line, $0.message) })
        }
        ingest = nil
        ingestEnded = false
        request = nil
        // The answer confirms the lines: it waits until the run's records so far are stored (those of
        // this body, and any an earlier body of the publisher left in flight).
        let loopBound = NIOLoopBound((self, context, session), eventLoop: context.eventLoop)
        session.worker.whenStored(through: session.worker.lastPublishedSeq, on: context.eventLoop).whenComplete { _ in
            let (handler, context, session) = loopBound.value
            guard context.channel.isActive else { return }
            handler.write(.json(session.summary()), for: head, context: context)
        }
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

    // MARK: Exports

    /// Sends a logs export. One that fits in its first chunk is an ordinary response with a
    /// `Content-Length`; a larger one is streamed chunked, each chunk read once the previous one has
    /// been written (so a slow client holds one chunk, not the run).
    private func startExport(_ export: LogExport, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        var exportHeaders = HTTPHeaders()
        for (name, value) in export.headers { exportHeaders.add(name: name, value: value) }
        let keepAlive = request.isKeepAlive && !closeAfterResponse
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        export.nextChunk(on: context.eventLoop).whenComplete { [exportHeaders] result in
            let (handler, context) = loopBound.value
            var headers = exportHeaders
            guard handler.context != nil, context.channel.isActive else { return }
            switch result {
            case .success(let chunk) where chunk == nil || export.isDone:
                handler.write(HTTPResponse(status: .ok, headers: headers, body: chunk ?? ByteBuffer()), for: request, context: context)
            case .success(let chunk):
                headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                context.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: .ok, headers: headers))), promise: nil)
                if request.method == .HEAD {
                    handler.finishResponse(keepAlive: keepAlive, context: context)
                } else {
                    handler.sendChunk(chunk!, of: export, keepAlive: keepAlive, context: context)
                }
            case .failure:
                handler.write(.error(GatewayError(.internalServerError, "export_failed", "the records could not be read")), for: request, context: context)
            }
        }
    }

    /// Writes `chunk`, then reads and writes the next one, until the export is complete.
    private func sendChunk(_ chunk: ByteBuffer, of export: LogExport, keepAlive: Bool, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk)))).flatMap {
            export.nextChunk(on: loopBound.value.1.eventLoop)
        }.whenComplete { result in
            let (handler, context) = loopBound.value
            guard handler.context != nil, context.channel.isActive else { return }
            switch result {
            case .success(let next?):
                handler.sendChunk(next, of: export, keepAlive: keepAlive, context: context)
            case .success(nil):
                handler.finishResponse(keepAlive: keepAlive, context: context)
            case .failure:
                // The head has gone: the only way left to say the body is incomplete is to cut the connection.
                context.close(promise: nil)
            }
        }
    }

    // MARK: Responses

    /// The client's address for the log: the peer, or behind a trusted proxy the forwarded client.
    private func clientAddress(_ head: HTTPRequestHead) -> String {
        ClientIdentity.resolve(peer: connection.address, headers: head.headers, trustedProxies: gateway.configuration.trustedProxies).address
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        if response.status.code >= 400 {
            gateway.statistics.refused(code: response.refusalCode, status: Int(response.status.code))
            gateway.log.refusal(code: response.refusalCode, status: Int(response.status.code), client: clientAddress(request),
                                method: "\(request.method)", uri: request.uri)
        }
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
        finishResponse(keepAlive: keepAlive, context: context)
    }

    /// Ends the response in progress; closes the connection after it unless it is kept alive.
    private func finishResponse(keepAlive: Bool, context: ChannelHandlerContext) {
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if keepAlive {
            armTimeout(.head, context: context, after: gateway.configuration.keepAliveTimeout)
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
