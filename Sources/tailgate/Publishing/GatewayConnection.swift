import NIOCore
import NIOHTTP1

/// One HTTP/1.1 connection to the gateway, used on its event loop only: one exchange at a time, a
/// request with a whole body (`send`) or a request whose body is streamed in chunks (`startBody`,
/// `writeChunk`, `endBody`). Each exchange's answer — or the failure that ended the connection — is
/// handed to its callback exactly once; an answer must come within the client's `answerTimeout` of the
/// request's end.
///
/// Its owner is told through `onChange` when something it may be waiting for happens: the channel
/// became writable again, an answer came (perhaps early, while the body is still being sent), or the
/// connection ended.
final class GatewayConnection {
    typealias AnswerHandler = (Result<HTTPAnswer, ConnectionFailure>) -> Void

    let channel: Channel
    private let client: GatewayClient
    private let collector: HTTPAnswerCollector
    private var pendingAnswer: AnswerHandler?
    private var answerTimer: Scheduled<Void>?
    /// Whether an answer said `Connection: close`, or came unasked.
    private var mustNotBeReused = false
    /// When the last answer came (connections idle for long are not reused).
    private(set) var idleSince = NIODeadline.now()
    /// Called on the event loop when the channel's writability changes, an answer comes, or the connection ends.
    var onChange: (() -> Void)?

    /// Wraps a channel made by `GatewayClient.connect`; call on its event loop.
    init(channel: Channel, client: GatewayClient) throws {
        self.channel = channel
        self.client = client
        collector = try channel.pipeline.syncOperations.handler(type: HTTPAnswerCollector.self)
        // Weak: the channel may end (a TLS close) after its owner has let go of the connection.
        collector.onAnswer = { [weak self] answer in self?.received(answer) }
        collector.onWritabilityChange = { [weak self] in self?.onChange?() }
        collector.onClose = { [weak self] error in self?.closed(error) }
        if collector.isClosed { closed(collector.firstError) }
    }

    /// Whether a new exchange may start on it: open, not asked to close, none under way.
    var isReusable: Bool {
        channel.isActive && !mustNotBeReused && pendingAnswer == nil
    }

    /// Whether the channel takes more data without queueing it (TCP backpressure).
    var isWritable: Bool { channel.isWritable }

    // MARK: Exchanges

    /// Sends a request with a whole body (`Content-Length`), and hands its answer to `then`.
    func send(_ method: HTTPMethod, _ path: String, body: ByteBuffer = ByteBuffer(), headers: [(String, String)] = [],
              answerWithin timeout: TimeAmount? = nil, then: @escaping AnswerHandler) {
        var head = client.head(method, path, extraHeaders: headers)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        begin(then)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        startAnswerTimer(timeout ?? client.configuration.answerTimeout)
    }

    /// Starts a request whose body follows in chunks (`Transfer-Encoding: chunked`); its answer goes to
    /// `then`, even when it comes before `endBody`.
    func startBody(_ method: HTTPMethod, _ path: String, headers: [(String, String)], then: @escaping AnswerHandler) {
        var head = client.head(method, path, extraHeaders: headers)
        head.headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        begin(then)
        channel.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
    }

    /// Sends one chunk of the body.
    func writeChunk(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(bytes)), promise: nil)
    }

    /// Ends the body; the answer must come within `answerTimeout`.
    func endBody() {
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        if pendingAnswer != nil { startAnswerTimer(client.configuration.answerTimeout) }
    }

    /// Closes the connection; an exchange under way fails.
    func close() {
        mustNotBeReused = true
        channel.close(promise: nil)
    }

    // MARK: Events

    private func begin(_ handler: @escaping AnswerHandler) {
        precondition(pendingAnswer == nil, "one exchange at a time")
        pendingAnswer = handler
    }

    private func startAnswerTimer(_ timeout: TimeAmount) {
        answerTimer?.cancel()
        answerTimer = channel.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, self.pendingAnswer != nil else { return }
            self.finish(.failure(.broken("no answer from the gateway \(self.client.configuration.address) within \(timeout.nanoseconds / 1_000_000_000) s")))
            self.close()
        }
    }

    private func received(_ answer: HTTPAnswer) {
        idleSince = .now()
        if !answer.keepAlive { mustNotBeReused = true }
        guard pendingAnswer != nil else {
            mustNotBeReused = true  // an answer nobody asked for (the gateway giving up on an idle connection)
            onChange?()
            return
        }
        finish(.success(answer))
        onChange?()
    }

    private func closed(_ error: Error?) {
        mustNotBeReused = true
        let failure = error.map { ConnectionFailure($0, address: client.configuration.address) }
            ?? .broken("the gateway \(client.configuration.address) closed the connection")
        finish(.failure(failure))
        onChange?()
    }

    private func finish(_ result: Result<HTTPAnswer, ConnectionFailure>) {
        answerTimer?.cancel()
        answerTimer = nil
        guard let handler = pendingAnswer else { return }
        pendingAnswer = nil
        handler(result)
    }
}
