import NIOCore
import TailgateCore

/// Simulated strategy workers (`demo-1` … `demo-N`) publishing at a steady rate from their own thread.
public final class DemoFleet: Sendable {
    /// The workers.
    public let workers: [Worker]
    private let task: RepeatedTask

    /// Registers `count` workers on `bus` and starts publishing `rate` records per second into each,
    /// from `loop` (a loop of its own, so publishing is cross-thread as for a real worker).
    public init(bus: LogBus, count: Int, rate: Double, loop: EventLoop) throws {
        let workers = try (1...max(1, count)).map { try bus.register(WorkerID("demo-\($0)")!) }
        self.workers = workers
        let tickMillis: Int64 = rate >= 2000 ? 1 : 10
        let started = NIODeadline.now()
        let state = NIOLoopBoundBox.makeBoxSendingValue(
            DemoProgress(generators: (0..<workers.count).map { DemoLines(index: $0) }, published: [Int](repeating: 0, count: workers.count), tick: []),
            as: DemoProgress.self, eventLoop: loop)
        // Each tick's records go to a worker in one call: one lock and at most one drain per tick, as a
        // worker that logs a burst would hand it over.
        task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(tickMillis)) { _ in
            let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            let due = Int(elapsed * rate)
            for index in workers.indices where state.value.published[index] < due {
                while state.value.published[index] < due {
                    state.value.tick.append(state.value.generators[index].next())
                    state.value.published[index] += 1
                }
                workers[index].enqueue(contentsOf: &state.value.tick)
            }
        }
    }

    /// Stops publishing (the workers keep running).
    public func pause() { task.cancel() }
}

private struct DemoProgress {
    var generators: [DemoLines]
    var published: [Int]
    /// One tick's records for one worker (emptied by each hand-over; its capacity is kept).
    var tick: [LogRecord]
}
