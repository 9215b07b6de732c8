import NIOCore
import Synchronization

/// Counts the ticks each event loop has finished. A tick is one poll of the loop's sockets followed by
/// the tasks that were ready; SwiftNIO reports its end to the group's metrics delegate (NIOPosix's
/// `NIOEventLoopMetricsDelegate`: forward `processedTick(info:)` to `tickEnded(loop: info.eventLoopID)`).
///
/// With it a `DrainQueue` knows when the loop has polled its sockets since the last sweep, so that the
/// next sweep may start at once instead of after the minimum interval.
public final class LoopTicks: Sendable {
    /// One loop's count.
    final class Count: Sendable {
        let value = Atomic<UInt64>(0)
    }

    private let counts = Lock<[(loop: ObjectIdentifier, count: Count)]>([])

    public init() {}

    /// Called at the end of every tick of the loop with this identity (on that loop's thread).
    public func tickEnded(loop: ObjectIdentifier) {
        count(for: loop).value.add(1, ordering: .relaxed)
    }

    /// The count of `loop`, made when first asked for.
    func count(for loop: ObjectIdentifier) -> Count {
        counts.withLock { counts in
            if let entry = counts.first(where: { $0.loop == loop }) { return entry.count }
            let count = Count()
            counts.append((loop, count))
            return count
        }
    }
}
