import NIOCore
import Synchronization

/// How a group of subscribers wants a batch put on the wire (a plain WebSocket frame, a compressed one…).
///
/// Subscribers with equal `key`s share one rendering of every batch: it is made once and cached in the
/// batch, whatever the number of subscribers.
public protocol BatchRendering: Sendable {
    /// Identifies the rendering; equal keys must render equal bytes.
    var key: Int { get }
    /// Turns a batch into the bytes that go on the wire.
    func render(_ batch: Batch) -> ByteBuffer
}

extension BatchRendering {
    /// `batch` in this rendering, made once per batch and key and shared by every caller.
    public func bytes(for batch: Batch) -> ByteBuffer {
        batch.derivedBytes(key: key) { render($0) }
    }
}

/// One subscriber of a worker's stream. Lives on one event loop; every call arrives on that loop.
public protocol BatchSubscriber: AnyObject {
    /// A new batch was appended to the worker's ring; `rendered` is its bytes in this subscriber's rendering.
    func offer(_ batch: Batch, rendered: ByteBuffer)
    /// The worker stopped: no batch will follow.
    func workerEnded()
}

/// A worker's subscribers, grouped by event loop and by rendering, and the delivery of each new batch to them.
///
/// Delivery happens on each subscriber's own loop: one task per loop per batch, never one per subscriber.
public final class FanOut: Sendable {
    private let loops = Mutex<[LoopSubscribers]>([])
    private let total = Atomic<Int>(0)

    init() {}

    /// How many subscribers are attached.
    public var subscriberCount: Int { total.load(ordering: .relaxed) }

    /// Attaches `subscriber`; call on `loop`, the subscriber's loop.
    public func add(_ subscriber: BatchSubscriber, rendering: BatchRendering, on loop: EventLoop) {
        loop.assertInEventLoop()
        subscribers(on: loop).add(subscriber, rendering: rendering)
        total.add(1, ordering: .relaxed)
    }

    /// Detaches `subscriber`; call on its loop. Detaching one that is not attached does nothing.
    public func remove(_ subscriber: BatchSubscriber, on loop: EventLoop) {
        loop.assertInEventLoop()
        if subscribers(on: loop).remove(subscriber) {
            total.subtract(1, ordering: .relaxed)
        }
    }

    private func subscribers(on loop: EventLoop) -> LoopSubscribers {
        loops.withLock { sets in
            if let set = sets.first(where: { $0.loop === loop }) { return set }
            let set = LoopSubscribers(loop: loop)
            sets.append(set)
            return set
        }
    }

    /// Offers `batch` to every subscriber, each on its own loop.
    func deliver(_ batch: Batch) {
        for set in loops.withLock({ $0 }) where set.count > 0 {
            if set.loop.inEventLoop {
                set.deliver(batch)
            } else {
                set.loop.execute { set.deliver(batch) }
            }
        }
    }

    /// Tells every subscriber that the worker stopped.
    func deliverEnd() {
        for set in loops.withLock({ $0 }) where set.count > 0 {
            if set.loop.inEventLoop {
                set.deliverEnd()
            } else {
                set.loop.execute { set.deliverEnd() }
            }
        }
    }
}

/// The subscribers of one worker on one event loop. Only touched on that loop (its `count` aside).
final class LoopSubscribers: @unchecked Sendable {
    let loop: EventLoop
    private var groups: [(rendering: BatchRendering, subscribers: [BatchSubscriber])] = []
    private let countAtomic = Atomic<Int>(0)

    init(loop: EventLoop) { self.loop = loop }

    var count: Int { countAtomic.load(ordering: .relaxed) }

    func add(_ subscriber: BatchSubscriber, rendering: BatchRendering) {
        if let index = groups.firstIndex(where: { $0.rendering.key == rendering.key }) {
            groups[index].subscribers.append(subscriber)
        } else {
            groups.append((rendering, [subscriber]))
        }
        countAtomic.add(1, ordering: .relaxed)
    }

    func remove(_ subscriber: BatchSubscriber) -> Bool {
        for index in groups.indices {
            if let position = groups[index].subscribers.firstIndex(where: { $0 === subscriber }) {
                groups[index].subscribers.remove(at: position)
                if groups[index].subscribers.isEmpty { groups.remove(at: index) }
                countAtomic.subtract(1, ordering: .relaxed)
                return true
            }
        }
        return false
    }

    func deliver(_ batch: Batch) {
        loop.assertInEventLoop()
        for group in groups {
            let bytes = group.rendering.bytes(for: batch)
            for subscriber in group.subscribers {
                subscriber.offer(batch, rendered: bytes)
            }
        }
    }

    func deliverEnd() {
        loop.assertInEventLoop()
        for group in groups {
            for subscriber in group.subscribers { subscriber.workerEnded() }
        }
    }
}
