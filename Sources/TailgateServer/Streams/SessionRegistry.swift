import NIOCore
import NIOWebSocket

/// An open stream the registry looks after: a worker's stream, a `/ws/streams` socket or a
/// Server-Sent Events response.
protocol RegisteredStream: AnyObject {
    /// Checked about once a second: stalls, keep-alive, token expiry.
    func tick(now: NIODeadline)
    /// Closes the stream (`code` for WebSockets; an event stream just ends).
    func close(code: WebSocketErrorCode, reason: String)
    /// The future of the connection's close, while the stream is in a pipeline.
    var closeFuture: EventLoopFuture<Void>? { get }
}

extension StreamSession: RegisteredStream {}

/// The open streams of one event loop: checks them for stalls and keep-alive once a second, and
/// closes them all at shutdown. Only touched on its loop.
final class SessionRegistry: @unchecked Sendable {
    let loop: EventLoop
    /// What this loop's streams have written, for `/metrics`.
    let delivery: StreamDeliveryCounters
    private var sessions: [ObjectIdentifier: any RegisteredStream] = [:]
    private var timer: RepeatedTask?

    init(loop: EventLoop, delivery: StreamDeliveryCounters = StreamDeliveryCounters()) {
        self.loop = loop
        self.delivery = delivery
    }

    var count: Int { sessions.count }

    func add(_ session: any RegisteredStream) {
        loop.assertInEventLoop()
        sessions[ObjectIdentifier(session)] = session
        if timer == nil {
            timer = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
                self?.tick()
            }
        }
    }

    func remove(_ session: any RegisteredStream) {
        loop.assertInEventLoop()
        sessions[ObjectIdentifier(session)] = nil
    }

    private func tick() {
        let now = NIODeadline.now()
        for session in Array(sessions.values) { session.tick(now: now) }
    }

    /// Closes every stream with `code` (1001 at shutdown). Returns the futures of their connections'
    /// closes.
    func closeAll(code: WebSocketErrorCode, reason: String) -> [EventLoopFuture<Void>] {
        loop.assertInEventLoop()
        let closes = sessions.values.compactMap { $0.closeFuture }
        for session in Array(sessions.values) { session.close(code: code, reason: reason) }
        timer?.cancel()
        timer = nil
        return closes
    }
}
