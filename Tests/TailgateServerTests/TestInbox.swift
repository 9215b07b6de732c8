import TailgateCore
import Dispatch
import NIOCore
import Synchronization

/// A test waited too long for something that should have happened.
struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// An unbounded queue filled by channel handlers (any thread) and drained by one test task.
///
/// `next(timeout:)` waits for the next element; the timeout is only a failure guard, never a way to
/// synchronise: an element that arrives in time is returned at once.
final class TestInbox<Element: Sendable>: Sendable {
    private struct State: ~Copyable {
        var items = CircularBuffer<Element>()
        var finished = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Element?, any Error>)?
        var nextWaiterID: UInt64 = 0
    }

    private let state = Lock(State())

    init() {}

    /// Adds an element (ignored after `finish`).
    func push(_ element: Element) {
        state.withLock { state in
            guard !state.finished else { return }
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.continuation.resume(returning: element)
            } else {
                state.items.append(element)
            }
        }
    }

    /// No element will follow: a waiting or later `next` returns `nil` once the queue is empty.
    func finish() {
        state.withLock { state in
            state.finished = true
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.continuation.resume(returning: nil)
            }
        }
    }

    /// Elements queued right now.
    var count: Int { state.withLock { $0.items.count } }

    /// Takes the next element without waiting, if there is one.
    func poll() -> Element? {
        state.withLock { $0.items.isEmpty ? nil : $0.items.removeFirst() }
    }

    /// The next element, `nil` when finished, or `TimedOut` after `timeout`.
    func next(timeout: Duration = .seconds(10), what: String = "the next message") async throws -> Element? {
        let element = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
            let waiterID: UInt64? = state.withLock { state in
                if !state.items.isEmpty {
                    continuation.resume(returning: state.items.removeFirst())
                    return nil
                }
                if state.finished {
                    continuation.resume(returning: nil)
                    return nil
                }
                precondition(state.waiter == nil, "TestInbox has a single consumer")
                let id = state.nextWaiterID
                state.nextWaiterID += 1
                state.waiter = (id, continuation)
                return id
            }
            guard let waiterID else { return }
            let (seconds, attoseconds) = timeout.components
            let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [self] in
                state.withLock { state in
                    guard let waiter = state.waiter, waiter.id == waiterID else { return }
                    state.waiter = nil
                    waiter.continuation.resume(throwing: TimedOut(what: what))
                }
            }
        }
        // The element came through a continuation, which ThreadSanitizer cannot see into: taking the lock
        // the producer held shows it that the element was complete before it is read.
        state.withLock { _ in }
        return element
    }
}

/// Waits until `condition` holds, checking every few milliseconds, for state that offers no event to
/// await (a server counter). Throws `TimedOut` after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !condition() {
        guard clock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}
