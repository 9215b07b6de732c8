#if canImport(Glibc)
import TailgateCore
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import NIOCore
import Synchronization

/// An event loop that runs its tasks only when the test says so, on the test's own thread.
///
/// The logging tests depend on NIOCore alone (no NIOPosix), and a loop that the test drives makes every
/// drain deterministic: publish, `run()`, read the ring.
final class ManualEventLoop: EventLoop {
    private struct ScheduledEntry {
        var id: Int
        var run: @Sendable () -> Void
        var cancel: @Sendable () -> Void
    }

    private struct State {
        var tasks: [@Sendable () -> Void] = []
        var scheduled: [ScheduledEntry] = []
        var nextID = 0
        var runner: pthread_t?
    }

    private let state = Lock(State())

    init() {}

    var inEventLoop: Bool {
        state.withLock { state in
            guard let runner = state.runner else { return false }
            return pthread_equal(runner, pthread_self()) != 0
        }
    }

    func execute(_ task: @escaping @Sendable () -> Void) {
        state.withLock { $0.tasks.append(task) }
    }

    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise = makePromise(of: T.self)
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.scheduled.append(ScheduledEntry(
                id: state.nextID,
                run: { promise.completeWith(Result { try task() }) },
                cancel: { promise.fail(EventLoopError.cancelled) }))
            return state.nextID
        }
        return Scheduled(promise: promise) { [weak self] in
            let entry = self?.state.withLock { state -> ScheduledEntry? in
                guard let index = state.scheduled.firstIndex(where: { $0.id == id }) else { return nil }
                return state.scheduled.remove(at: index)
            }
            entry?.cancel()
        }
    }

    func scheduleTask<T>(in amount: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + amount, task)
    }

    /// How many tasks wait to run (scheduled ones aside).
    var pendingTasks: Int { state.withLock { $0.tasks.count } }

    /// How many scheduled tasks wait for `runScheduledTasks()`.
    var pendingScheduledTasks: Int { state.withLock { $0.scheduled.count } }

    /// Runs the queued tasks, and those they queue, until none is left.
    func run() {
        state.withLock { $0.runner = pthread_self() }
        defer { state.withLock { $0.runner = nil } }
        while let task = state.withLock({ $0.tasks.isEmpty ? nil : $0.tasks.removeFirst() }) {
            task()
        }
    }

    /// Runs every scheduled task now, whatever its deadline, then the tasks they queued.
    func runScheduledTasks() {
        let entries = state.withLock { state -> [ScheduledEntry] in
            defer { state.scheduled.removeAll() }
            return state.scheduled
        }
        state.withLock { $0.runner = pthread_self() }
        for entry in entries { entry.run() }
        state.withLock { $0.runner = nil }
        run()
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        let entries = state.withLock { state -> [ScheduledEntry] in
            defer { state.scheduled.removeAll() }
            return state.scheduled
        }
        for entry in entries { entry.cancel() }
        queue.async { callback(nil) }
    }

    /// Cancels what is left, so that no promise is leaked.
    func close() {
        let entries = state.withLock { state -> [ScheduledEntry] in
            defer { state.scheduled.removeAll(); state.tasks.removeAll() }
            return state.scheduled
        }
        for entry in entries { entry.cancel() }
    }
}
