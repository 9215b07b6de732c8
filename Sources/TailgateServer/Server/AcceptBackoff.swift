import TailgateCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What the listening socket does when `accept` fails for want of resources (file descriptors,
/// EMFILE/ENFILE, or memory): it stops accepting for `delay` — turning off reads on the listening
/// channel, so that epoll stops reporting it — instead of retrying at once, which would spin the loop
/// at 100% CPU while the open connections starve. Each failure is counted in the statistics; a warning
/// is logged at most once per `logInterval`. Open connections keep being served.
final class AcceptBackoff: Sendable {
    let delay: TimeAmount
    private let logInterval: TimeAmount
    private let statistics: GatewayStatistics
    private let logger: Logger
    /// When the last warning was logged, and the failures since.
    private let reporting = Lock<(lastLog: NIODeadline?, unreported: Int)>((nil, 0))

    init(delay: TimeAmount = .milliseconds(100), logInterval: TimeAmount = .seconds(10), statistics: GatewayStatistics, logger: Logger) {
        self.delay = delay
        self.logInterval = logInterval
        self.statistics = statistics
        self.logger = logger
    }

    /// The handler for the listening channel's pipeline.
    func makeHandler() -> Handler { Handler(backoff: self) }

    /// Whether accepting may work again later: the process or system is out of descriptors or memory.
    static func isTemporary(_ error: IOError) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode)
    }

    fileprivate func record(_ error: IOError) {
        statistics.acceptBackoffs.add(1, ordering: .relaxed)
        let now = NIODeadline.now()
        let report = reporting.withLock { state -> Int? in
            state.unreported += 1
            if let last = state.lastLog, now - last < logInterval { return nil }
            defer { state = (now, 0) }
            return state.unreported
        }
        if let report {
            logger.warning("cannot accept connections: \(error.description); pausing accepts for \(delay.nanoseconds / 1_000_000) ms",
                           metadata: ["failures_since_last_report": "\(report)"])
        }
    }

    /// Pauses the listening channel's reads after a temporary accept failure.
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = Channel
        private let backoff: AcceptBackoff
        private var paused = false

        init(backoff: AcceptBackoff) { self.backoff = backoff }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            guard let ioError = error as? IOError, AcceptBackoff.isTemporary(ioError) else {
                context.fireErrorCaught(error)
                return
            }
            backoff.record(ioError)
            guard !paused else { return }
            paused = true
            _ = try? context.channel.syncOptions?.setOption(.autoRead, value: false)
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: backoff.delay) {
                let (handler, context) = loopBound.value
                handler.paused = false
                _ = try? context.channel.syncOptions?.setOption(.autoRead, value: true)
            }
        }
    }
}
