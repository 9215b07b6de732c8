import CoreMetrics
import NIOCore
import Synchronization

/// Measures how late each event loop runs a task scheduled for a given moment, every `interval`:
/// the time a new connection or a due drain waits while the loop is busy.
final class EventLoopDelayProbe: Sendable {
    /// How often each loop is measured.
    static let interval = TimeAmount.milliseconds(250)

    private let loops: [EventLoop]
    private let delay: CoreMetrics.Timer
    private let stopped = Atomic<Bool>(false)

    init(loops: [EventLoop], delay: CoreMetrics.Timer) {
        self.loops = loops
        self.delay = delay
    }

    /// Starts measuring every loop.
    func start() {
        for loop in loops { scheduleNext(on: loop) }
    }

    /// Stops measuring (the next scheduled task of each loop is the last).
    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func scheduleNext(on loop: EventLoop) {
        let due = NIODeadline.now() + Self.interval
        loop.scheduleTask(deadline: due) { [self] in
            guard !stopped.load(ordering: .relaxed) else { return }
            delay.recordNanoseconds(max(0, (NIODeadline.now() - due).nanoseconds))
            scheduleNext(on: loop)
        }
    }
}
