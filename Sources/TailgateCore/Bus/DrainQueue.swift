import NIOCore
import Synchronization

/// The drains due on one event loop, run in sweeps: one task drains the workers that asked since the
/// last sweep (for at most `sweepBudget`), and a sweep follows the previous one no sooner than
/// `minimumInterval` after it ended.
///
/// SwiftNIO runs every task that is ready before it polls its sockets again. One task per worker per
/// publish would, with many busy workers, keep that run going for ever — accepted connections would
/// wait unread — whereas a sweep that follows a busy one is scheduled for later than now, so the loop
/// polls in between. After a quiet spell a sweep starts at once, and so it does when the loop has
/// finished the tick of the last sweep (`ticks`, when the bus counts them): the loop has then polled its
/// sockets since, and will again before it runs a task submitted now.
final class DrainQueue: Sendable {
    let loop: EventLoop
    private let minimumInterval: TimeAmount
    /// The loop's finished ticks, or nil when they are not counted (then only the interval applies).
    private let ticks: LoopTicks.Count?
    private let state = Lock<State>(State())

    private struct State {
        var workers: [Worker] = []
        /// A sweep is scheduled or running: requests only join it (or the one after it).
        var scheduled = false
        /// When the last sweep ended (monotonic nanoseconds).
        var lastSweepEnd: UInt64 = 0
        /// The loop's finished ticks when the last sweep ended (that sweep's own tick not among them).
        var ticksAtSweepEnd: UInt64 = 0
    }

    init(loop: EventLoop, minimumInterval: TimeAmount, ticks: LoopTicks? = nil) {
        self.loop = loop
        self.minimumInterval = minimumInterval
        self.ticks = ticks?.count(for: ObjectIdentifier(loop as AnyObject))
    }

    /// Asks for `worker.drain()` on this loop. Callable from any thread; call once per drain wanted.
    func request(_ worker: Worker) {
        let interval = UInt64(max(0, minimumInterval.nanoseconds))
        let delay = state.withLock { state -> UInt64? in
            state.workers.append(worker)
            guard !state.scheduled else { return nil }
            state.scheduled = true
            if let ticks, ticks.value.load(ordering: .relaxed) != state.ticksAtSweepEnd { return 0 }
            let now = NIODeadline.now().uptimeNanoseconds
            let earliest = state.lastSweepEnd &+ interval
            return earliest > now ? earliest - now : 0
        }
        guard let delay else { return }
        if delay == 0 {
            loop.execute { self.sweep() }
        } else {
            loop.scheduleTask(in: .nanoseconds(Int64(delay))) { self.sweep() }
        }
    }

    /// Drains the workers that asked, for at most `sweepBudget`; those left wait for the next sweep, first.
    private func sweep() {
        let workers = state.withLock { state -> [Worker] in
            defer { state.workers.removeAll(keepingCapacity: true) }
            return state.workers
        }
        let deadline = NIODeadline.now() + Self.sweepBudget
        var done = 0
        while done < workers.count {
            workers[done].drain()
            done += 1
            if NIODeadline.now() >= deadline { break }
        }
        let again = state.withLock { state -> Bool in
            if done < workers.count { state.workers.insert(contentsOf: workers[done...], at: 0) }
            state.lastSweepEnd = NIODeadline.now().uptimeNanoseconds
            state.ticksAtSweepEnd = ticks?.value.load(ordering: .relaxed) ?? 0
            if state.workers.isEmpty { state.scheduled = false }
            return !state.workers.isEmpty
        }
        if again { loop.scheduleTask(in: minimumInterval) { self.sweep() } }
    }

    /// How long one sweep may drain before it leaves the remaining workers to the next one.
    static let sweepBudget = TimeAmount.milliseconds(2)
}
