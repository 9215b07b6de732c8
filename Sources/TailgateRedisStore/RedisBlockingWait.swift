import Dispatch
import NIOCore
import TailgateCore

extension EventLoopFuture where Value: Sendable {
    /// Blocks the calling thread until the future completes, or throws `BlockingWaitTimeout` after
    /// `timeout`. Unlike `wait()` it may be called on an event loop of
    /// another group (NIO forbids `wait()` on any loop): the bus takes a lease and resumes a run while
    /// an HTTP request is decided on a gateway loop, once per worker made, as the embedded store reads
    /// a run's tail from disk there. Never call it on the future's own loop (it would wait forever).
    func blockingResult(within timeout: TimeAmount) throws -> Value {
        precondition(!eventLoop.inEventLoop, "blockingResult on the future's own loop")
        let done = DispatchSemaphore(value: 0)
        let outcome = Lock<Result<Value, Error>?>(nil)
        whenComplete { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        guard done.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success else { throw BlockingWaitTimeout(timeout: timeout) }
        return try outcome.withLock { $0! }.get()
    }
}

/// Redis did not answer within the time a blocking call allows.
struct BlockingWaitTimeout: Error, CustomStringConvertible {
    var timeout: TimeAmount
    var description: String { "Redis did not answer within \(timeout.nanoseconds / 1_000_000) ms" }
}
