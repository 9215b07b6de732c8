import NIOCore
import NIOHTTP1
import NIOWebSocket
import TailgateCore

/// Answers the gateway's plain HTTP requests: the REST API, health, static files, and the refusals of
/// stream requests that could not be upgraded. One per connection; removed when the connection
/// becomes a stream.
final class HTTPRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let gateway: GatewayContext
    private let connection: ConnectionState
    private var request: HTTPRequestHead?
    private var timeout: Scheduled<Void>?
    private var closeAfterResponse = false
    /// The body being published (`POST /api/workers/{id}/records`).
    private var ingest: IngestSession?
    /// The rest of this request's body is ignored (it was refused already).
    private var discardingBody = false
    /// Reads are held back while the ingest worker's queue drains.
    private var readsPaused = false
    private var readPending = false

    init(gateway: GatewayContext, connection: ConnectionState) {
        self.gateway = gateway
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimeout(context: context, after: gateway.configuration.handshakeTimeout, reason: "request head not received in time")
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    private func armTimeout(context: ChannelHandlerContext, after delay: TimeAmount, reason: String) {
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
            if IngestRoute.matches(head, basePath: gateway.configuration.basePath) { startIngest(head, context: context) }
        case .body(var buffer):
            if let ingest, !discardingBody {
                let limit = gateway.ingestQueueLimit
                if !ingest.consume(&buffer, queueLimit: limit) || ingest.worker.queuedCount >= limit {
                    pauseReads(context: context)
                }
            }
        case .end:
            guard let head = request else { return }
            request = nil
            if discardingBody {
                discardingBody = false
                return
            }
            if let ingest {
                finishIngest(ingest, head: head, context: context)
            } else {
                respond(to: head, context: context)
            }
        }
    }

    // MARK: Ingest

    private func startIngest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        do throws(GatewayError) {
            if case .refused(let error) = connection.admission { throw error }
            let session = try IngestRoute.open(head, peer: connection.address, gateway: gateway)
            ingest = session
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        } catch {
            discardingBody = true
            closeAfterResponse = true
            gateway.statistics.refusals.add(1, ordering: .relaxed)
            write(.error(error), for: head, context: context)
        }
    }

    private func finishIngest(_ session: IngestSession, head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard !session.isHoldingInput else {
            // Input is still waiting for the queue: answer once it is all published.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(1)) {
                let (handler, context) = loopBound.value
                _ = session.resume(queueLimit: handler.gateway.ingestQueueLimit)
                handler.finishIngest(session, head: head, context: context)
            }
            return
        }
        session.finish()
        ingest = nil
        write(.json(session.summary()), for: head, context: context)
    }

    private func pauseReads(context: ChannelHandlerContext) {
        guard !readsPaused else { return }
        readsPaused = true
        gateway.statistics.ingestPauses.add(1, ordering: .relaxed)
        scheduleResumeCheck(context: context)
    }

    private func scheduleResumeCheck(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(1)) {
            let (handler, context) = loopBound.value
            handler.checkResume(context: context)
        }
    }

    private func checkResume(context: ChannelHandlerContext) {
        guard readsPaused, let ingest else {
            readsPaused = false
            return
        }
        let limit = gateway.ingestQueueLimit
        if ingest.worker.queuedCount >= limit / 2 || (ingest.isHoldingInput && !ingest.resume(queueLimit: limit)) {
            scheduleResumeCheck(context: context)
            return
        }
        readsPaused = false
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

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        var response: HTTPResponse
        if case .refused(let error) = connection.admission {
            response = .error(error)
            closeAfterResponse = true
        } else {
            do {
                response = try route(head)
            } catch {
                response = .error(error)
            }
        }
        if response.status.code >= 400 { gateway.statistics.refusals.add(1, ordering: .relaxed) }
        write(response, for: head, context: context)
    }

    private func route(_ head: HTTPRequestHead) throws(GatewayError) -> HTTPResponse {
        let target = try RequestTarget(BasePath.strip(head.uri, basePath: gateway.configuration.basePath))
        let path = target.path
        if StreamRequestValidator.workerIDText(inPath: path) != nil {
            // A stream request that was not upgraded: say why.
            if let refusal = connection.upgradeRefusal {
                connection.upgradeRefusal = nil
                throw refusal
            }
            _ = try gateway.validator.validate(head, peer: connection.address)
            throw GatewayError(.badRequest, "bad_websocket_handshake", "the WebSocket handshake could not be completed")
        }
        if path == "/healthz" {
            try requireGET(head)
            var body = ByteBuffer()
            body.writeStaticString("{\"status\":\"ok\"}\n")
            return .json(body)
        }
        if path == "/api/workers" || path == "/api/workers/" {
            try requireGET(head)
            let token = try gateway.configuration.access.token(query: target, headers: head.headers)
            try gateway.configuration.access.require(.read, on: nil, token: token)
            let snapshots = gateway.bus.allWorkers().filter { token?.covers($0.id) ?? true }.map { $0.snapshot() }
            return .json(WorkerJSON.list(snapshots, streamBase: streamBase(head), pathPrefix: gateway.configuration.basePath))
        }
        if path == "/api/stats" {
            try requireGET(head)
            let token = try gateway.configuration.access.token(query: target, headers: head.headers)
            try gateway.configuration.access.require(.read, on: nil, token: token)
            return .json(StatisticsJSON.render(gateway))
        }
        if path.hasPrefix("/api/workers/") {
            return try routeWorker(head, target: target, rest: path.dropFirst("/api/workers/".count))
        }
        if path.hasPrefix("/api/") { throw GatewayError.notFound }
        try requireGET(head)
        guard let files = gateway.staticFiles else {
            throw GatewayError(.notFound, "no_public_directory", "the gateway was started without a public directory")
        }
        return try files.response(path: path, requestHeaders: head.headers)
    }

    private func routeWorker(_ head: HTTPRequestHead, target: RequestTarget, rest: Substring) throws(GatewayError) -> HTTPResponse {
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let id = WorkerID(parts[0]) else { throw GatewayError.badWorkerID(parts[0]) }
        let action = parts.count > 1 ? parts[1] : ""
        let access = gateway.configuration.access
        switch action {
        case "":
            try requireGET(head)
            try access.require(.read, on: id, token: try access.token(query: target, headers: head.headers))
            guard let worker = gateway.bus.worker(id) else { throw GatewayError.workerNotFound(id) }
            return .json(WorkerJSON.one(worker.snapshot(), streamBase: streamBase(head), pathPrefix: gateway.configuration.basePath))
        case "stop":
            guard head.method == .POST else { throw GatewayError.methodNotAllowed("POST") }
            try IngestRoute.authorizePublisher(head, target: target, peer: connection.address, id: id, gateway: gateway)
            guard let worker = gateway.bus.worker(id) else { throw GatewayError.workerNotFound(id) }
            guard worker.owner == .remote else { throw IngestRoute.ownedInProcess(id) }
            worker.stop()
            var body = ByteBuffer()
            body.writeStaticString("{\"stopped\":true,\"worker\":")
            body.writeJSONString(id.rawValue)
            body.writeStaticString("}\n")
            return .json(body)
        case "records":
            throw GatewayError.methodNotAllowed("POST, PUT")
        case "logs":
            try requireGET(head)
            try access.require(.read, on: id, token: try access.token(query: target, headers: head.headers))
            let since = try target.unsignedValue("since")
            let limit = try target.unsignedValue("limit", max: 10_000_000).map { Int($0) }
            let formatText = target.value("format") ?? "ndjson"
            guard let format = LogExport.Format(rawValue: formatText) else {
                throw .badParameter("format", "expected 'ndjson' or 'text', got '\(formatText.prefix(40))'")
            }
            let download = target.value("download")
            guard download == nil || download == "0" || download == "1" else {
                throw .badParameter("download", "expected 0 or 1")
            }
            guard let worker = gateway.bus.worker(id) else { throw GatewayError.workerNotFound(id) }
            var response = HTTPResponse(body: LogExport.render(worker, since: since, limit: limit, format: format))
            response.headers.add(name: "Content-Type", value: format == .ndjson ? "application/x-ndjson; charset=utf-8" : "text/plain; charset=utf-8")
            response.headers.add(name: "Cache-Control", value: "no-store")
            if download == "1" {
                let name = "\(String(id.rawValue.map { $0 == ":" ? "_" : $0 })).\(format == .ndjson ? "ndjson" : "log")"
                response.headers.add(name: "Content-Disposition", value: "attachment; filename=\"\(name)\"")
            }
            return response
        default:
            throw GatewayError.notFound
        }
    }

    private func requireGET(_ head: HTTPRequestHead) throws(GatewayError) {
        guard head.method == .GET || head.method == .HEAD else { throw GatewayError.methodNotAllowed("GET, HEAD") }
    }

    /// `ws://` (or `wss://` behind a TLS proxy) plus the host the client used, for `log_stream_url`.
    private func streamBase(_ head: HTTPRequestHead) -> String {
        ClientIdentity.resolve(peer: connection.address, headers: head.headers, trustedProxies: gateway.configuration.trustedProxies)
            .streamBase(fallbackHost: gateway.listeningHost)
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
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
            armTimeout(context: context, after: gateway.configuration.keepAliveTimeout, reason: "idle")
        } else {
            let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in loopBoundContext.value.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case let parserError as HTTPParserError:
            let refusal: GatewayError
            if case .headerOverflow = parserError {
                refusal = GatewayError(.init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                                       "headers_too_large",
                                       "the request head is larger than \(gateway.configuration.maxHeaderBytes) bytes")
            } else {
                refusal = GatewayError(.badRequest, "bad_request", "malformed HTTP request (\(parserError))")
            }
            gateway.statistics.refusals.add(1, ordering: .relaxed)
            closeAfterResponse = true
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["connection": "close"])
            write(.error(refusal), for: head, context: context)
        case is HTTPServerUpgradeErrors, is NIOWebSocketUpgradeError:
            // A failed upgrade attempt: the request follows as a plain one and is answered then.
            break
        default:
            context.close(promise: nil)
        }
    }
}
