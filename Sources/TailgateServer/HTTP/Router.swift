import NIOHTTP1
import TailgateCore

/// What to do with a request, decided once, when its head has arrived.
enum RouteDecision {
    /// Answer when the request has ended.
    case respond(HTTPResponse)
    /// Answer at once, ignore the rest of the body and close the connection: a refused request that
    /// may carry a long (or endless) body.
    case refuseNow(GatewayError)
    /// Publish the body as it arrives, answer with the summary at its end.
    case ingest(IngestSession)
    /// Switch to a stream when the request has ended.
    case upgrade(StreamAcceptance)
    /// Switch to a socket of many workers' streams (`/ws/streams`) when the request has ended.
    case multiplex(MultiplexAcceptance)
    /// Answer with a Server-Sent Events stream when the request has ended.
    case events(EventStreamAcceptance)
    /// Stream a logs export, chunk by chunk, when the request has ended.
    case export(LogExport)
}

/// Routes every request: parses its target once, checks the connection's admission, and hands the
/// request to the endpoint's handler function: `APIEndpoints`, `MetricsEndpoint`, `LogExport`,
/// `IngestEndpoint`, `StreamEndpoint`, `MultiplexEndpoint`, `EventStreamEndpoint` or `StaticFiles`.
struct Router {
    let gateway: GatewayContext

    func decide(_ head: HTTPRequestHead, connection: ConnectionState) -> RouteDecision {
        do throws(GatewayError) {
            if case .refused(let refusal) = connection.admission { throw refusal }
            let request = try Request(head: head, peer: connection.address, basePath: gateway.configuration.basePath)
            try gateway.hostPolicy.check(request, trustedProxies: gateway.configuration.trustedProxies)
            switch request.route {
            case .stream(let id):
                return .upgrade(try StreamEndpoint.accept(request, id: id, connection: connection, gateway: gateway))
            case .runStream(let id, let epoch):
                return .upgrade(try StreamEndpoint.accept(request, id: id, run: epoch, connection: connection, gateway: gateway))
            case .multiplexStream:
                return .multiplex(try MultiplexEndpoint.accept(request, connection: connection, gateway: gateway))
            case .workerEvents(let id):
                return .events(try EventStreamEndpoint.acceptWorker(request, id: id, run: nil, connection: connection, gateway: gateway))
            case .workerRunEvents(let id, let epoch):
                return .events(try EventStreamEndpoint.acceptWorker(request, id: id, run: epoch, connection: connection, gateway: gateway))
            case .streamEvents:
                return .events(try EventStreamEndpoint.acceptList(request, connection: connection, gateway: gateway))
            case .workerRuns(let id):
                return .respond(try APIEndpoints.runs(request, id: id, gateway: gateway))
            case .workerRun(let id, let epoch):
                return .respond(try APIEndpoints.run(request, id: id, epoch: epoch, gateway: gateway))
            case .workerRunLogs(let id, let epoch):
                return .export(try LogExport.start(request, id: id, run: epoch, gateway: gateway))
            case .workerRecords(let id):
                guard request.method == .POST || request.method == .PUT else { throw GatewayError.methodNotAllowed("POST, PUT") }
                return .ingest(try IngestEndpoint.open(request, id: id, gateway: gateway))
            case .workerStop(let id):
                return .respond(try IngestEndpoint.stop(request, id: id, gateway: gateway))
            case .health:
                return .respond(try APIEndpoints.health(request))
            case .readiness:
                return .respond(try APIEndpoints.readiness(request, gateway: gateway))
            case .metrics:
                return .respond(try MetricsEndpoint.metrics(request, gateway: gateway))
            case .workerList:
                return .respond(try APIEndpoints.workerList(request, gateway: gateway))
            case .statistics:
                return .respond(try APIEndpoints.statistics(request, gateway: gateway))
            case .worker(let id):
                return .respond(try APIEndpoints.worker(request, id: id, gateway: gateway))
            case .workerLogs(let id):
                return .export(try LogExport.start(request, id: id, run: nil, gateway: gateway))
            case .unknownAPI:
                throw GatewayError.notFound
            case .file(let path):
                try request.requireGET()
                guard let files = gateway.staticFiles else {
                    throw GatewayError(.notFound, "no_public_directory", "the gateway was started without a public directory")
                }
                return .respond(try files.response(path: path, requestHeaders: request.headers))
            }
        } catch {
            // A request that may carry a body is refused before it is read.
            if head.method == .POST || head.method == .PUT { return .refuseNow(error) }
            return .respond(.error(error))
        }
    }
}
