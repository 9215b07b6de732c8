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
    /// The first seq not sent to this subscriber yet: batches that end before it are not offered.
    var nextSeq: UInt64 { get }
    /// A batch of the worker's ring that holds `nextSeq` or later; `rendered` is its bytes in this
    /// subscriber's rendering.
    func offer(_ batch: Batch, rendered: ByteBuffer)
    /// The worker stopped: no batch will follow.
    func workerEnded()
}

/// A worker's subscribers, grouped by event loop, and the delivery of each new batch to them.
///
/// Delivery happens on each subscriber's own loop: one task per loop per batch, never one per subscriber.
public final class FanOut: Sendable {
    private let loops = Lock<[LoopSubscribers]>([])
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

/// The subscribers of one worker on one event loop, and the delivery of new batches to them.
///
/// Delivery is a round over the subscribers: each visit offers a subscriber the recent batches it has
/// not had, as one message. A round that outlasts `turnBudget` yields the loop (so that sockets are
/// polled and the worker drains what was published meanwhile) and goes on where it stopped; batches
/// that arrive in the meantime join the round, and the subscribers before the cursor get them when it
/// comes round again. So at a thousand subscribers a record waits for at most one round, not for the
/// round in progress to end and then for its own turn in the next one. A round that fits in the
/// budget runs at once, inside `deliver`.
///
/// Only touched on `loop` (its `count` aside). Its state is marked `@exclusivity(unchecked)`: one
/// thread touches it, never through overlapping accesses, and the run-time checks of class properties
/// were 8% of the instructions of a visit (Benchmarks/results/FINDINGS.md).
final class LoopSubscribers: @unchecked Sendable {
    let loop: EventLoop
    private struct Entry {
        let subscriber: BatchSubscriber
        let rendering: BatchRendering
    }
    /// Batches not yet offered to every subscriber, oldest first, each with the visit count (see
    /// `visits`) at which every subscriber has been visited since it arrived.
    private struct Pending {
        let batch: Batch
        var doneAt: Int
    }
    @exclusivity(unchecked) private var entries: [Entry] = []
    /// `entries`' subscribers, to find one without retaining every entry on the way.
    @exclusivity(unchecked) private var ids: [ObjectIdentifier] = []
    @exclusivity(unchecked) private var pending: [Pending] = []
    @exclusivity(unchecked) private var pendingStart = 0
    /// Runs of pending batches merged for a visit, each from some batch to the newest: valid until the next batch arrives.
    @exclusivity(unchecked) private var mergedRuns: [(firstSeq: UInt64, batch: Batch?)] = []
    /// The next subscriber to visit.
    @exclusivity(unchecked) private var cursor = 0
    /// Visits made so far.
    @exclusivity(unchecked) private var visits = 0
    @exclusivity(unchecked) private var continuationScheduled = false
    /// A subscriber is being visited: `pending` must keep its indices until the visit ends.
    @exclusivity(unchecked) private var visiting = false
    private let countAtomic = Atomic<Int>(0)

    /// How long one turn of a round may run before it yields the loop.
    static let turnBudget = TimeAmount.milliseconds(1)
    /// The most bytes of pending batches merged into one message for a visit (more go one by one).
    static let mergedRunBytes = 256 << 10
    /// The pause a yielding round takes: long enough that the loop polls its sockets before the round goes on.
    static let yieldDelay = TimeAmount.microseconds(10)

    init(loop: EventLoop) { self.loop = loop }

    var count: Int { countAtomic.load(ordering: .relaxed) }

    /// How many subscribers at the cursor and after it, going round, still need a visit for `item`.
    private func unvisited(_ item: Pending) -> Int { item.doneAt - visits }

    func add(_ subscriber: BatchSubscriber, rendering: BatchRendering) {
        // The newcomer goes last. When a pending batch's unvisited stretch wraps past the end, the
        // newcomer lands inside it; counting one more visit keeps the stretch exact (the newcomer's
        // visit offers nothing when it already has the batch from the ring).
        let oldCount = entries.count
        for index in pending.indices[pendingStart...] where cursor + unvisited(pending[index]) > oldCount {
            pending[index].doneAt += 1
        }
        entries.append(Entry(subscriber: subscriber, rendering: rendering))
        ids.append(ObjectIdentifier(subscriber))
        countAtomic.add(1, ordering: .relaxed)
    }

    func remove(_ subscriber: BatchSubscriber) -> Bool {
        guard let position = ids.firstIndex(of: ObjectIdentifier(subscriber)) else { return false }
        let oldCount = entries.count
        let offset = (position - cursor + oldCount) % oldCount
        for index in pending.indices[pendingStart...] where offset < unvisited(pending[index]) {
            pending[index].doneAt -= 1
        }
        entries.remove(at: position)
        ids.remove(at: position)
        if position < cursor { cursor -= 1 }
        if cursor >= entries.count { cursor = 0 }
        countAtomic.subtract(1, ordering: .relaxed)
        if !visiting { dropDelivered() }
        return true
    }

    func deliver(_ batch: Batch) {
        loop.assertInEventLoop()
        guard !entries.isEmpty else { return }
        pending.append(Pending(batch: batch, doneAt: visits + entries.count))
        mergedRuns.removeAll(keepingCapacity: true)
        if !continuationScheduled { runTurn() }
    }

    func deliverEnd() {
        loop.assertInEventLoop()
        for entry in entries { entry.subscriber.workerEnded() }
    }

    /// Visits subscribers from the cursor until every pending batch has been offered to all of them
    /// or the turn's budget is spent; then schedules the next turn.
    private func runTurn() {
        let deadline = NIODeadline.now() + Self.turnBudget
        var sinceClock = 0
        while pendingStart < pending.count, !entries.isEmpty {
            let entry = entries[cursor]
            visiting = true
            visit(entry)
            visiting = false
            // A subscriber may leave while visited (its write failed, its stream ended): `remove` then
            // counted it as no longer needing a visit and left the cursor on the next one.
            if entries.indices.contains(cursor), entries[cursor].subscriber === entry.subscriber {
                visits += 1
                cursor += 1
                if cursor == entries.count { cursor = 0 }
            }
            dropDelivered()
            sinceClock += 1
            if sinceClock == 16 {
                sinceClock = 0
                if pendingStart < pending.count, NIODeadline.now() >= deadline {
                    continuationScheduled = true
                    loop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.yieldDelay) {
                        self.continuationScheduled = false
                        self.runTurn()
                    }
                    return
                }
            }
        }
    }

    /// Offers `entry` what it lacks of the pending batches: one batch, or the run of them it lacks
    /// merged into one (made once per run and shared by every subscriber that lacks the same run), so
    /// that a visit is one write of one message.
    private func visit(_ entry: Entry) {
        let subscriber = entry.subscriber
        let next = subscriber.nextSeq
        var low = pendingStart
        var high = pending.count
        while low < high {  // the first pending batch that ends at `next` or later
            let middle = (low + high) / 2
            if pending[middle].batch.lastSeq < next { low = middle + 1 } else { high = middle }
        }
        guard low < pending.count else { return }
        if low < pending.count - 1, pending[low].batch.firstSeq == next, let batch = mergedRun(from: low) {
            subscriber.offer(batch, rendered: entry.rendering.bytes(for: batch))
        } else {
            // One batch, a run too large to merge, or a subscriber that stands inside a batch (it
            // catches up from the ring).
            var index = low
            while index < pending.count {
                let batch = pending[index].batch
                index += 1
                guard batch.lastSeq >= subscriber.nextSeq else { continue }
                subscriber.offer(batch, rendered: entry.rendering.bytes(for: batch))
            }
        }
    }

    /// The pending batches from `index` to the newest, merged into one batch (cached until a batch
    /// arrives); `nil` when they hold more than `mergedRunBytes`.
    private func mergedRun(from index: Int) -> Batch? {
        let firstSeq = pending[index].batch.firstSeq
        if let cached = mergedRuns.first(where: { $0.firstSeq == firstSeq }) { return cached.batch }
        let bytes = pending[index...].reduce(0) { $0 + $1.batch.payload.readableBytes }
        let batch = bytes <= Self.mergedRunBytes ? Batch.merging(pending[index...].lazy.map(\.batch), from: firstSeq) : nil
        mergedRuns.append((firstSeq, batch))
        return batch
    }

    /// Forgets the batches every subscriber has been visited for.
    private func dropDelivered() {
        while pendingStart < pending.count, pending[pendingStart].doneAt <= visits {
            pendingStart += 1
        }
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        } else if pendingStart >= 64 && pendingStart * 2 >= pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
    }
}
