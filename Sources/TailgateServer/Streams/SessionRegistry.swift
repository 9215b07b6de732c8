import NIOCore
import NIOWebSocket

/// The open streams of one event loop: checks them for stalls and keep-alive once a second, and
/// closes them all at shutdown. Only touched on its loop.
final class SessionRegistry: @unchecked Sendable {
    let loop: EventLoop
    /// What this loop's streams have written, for `/metrics`.
    let delivery: StreamDeliveryCounters
    private var sessions: [ObjectIdentifier: StreamSession] = [:]
    private var timer: RepeatedTask?

    init(loop: EventLoop, delivery: StreamDeliveryCounters = StreamDeliveryCounters()) {
        self.loop = loop
        self.delivery = delivery
    }

    var count: Int { sessions.count }

    func add(_ session: StreamSession) {
        loop.assertInEventLoop()
        sessions[ObjectIdentifier(session)] = session
        if timer == nil {
            timer = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
                self?.tick()
            }
        }
    }

    func remove(_ session: StreamSession) {
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
