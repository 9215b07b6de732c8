import Foundation
import NIOCore
import Synchronization
import Testing
@testable import TailgateCore

// Helpers shared by the core test suites.

/// Parses the readable bytes of `buffer` with Tailgate's own parser.
func parseJSON(_ buffer: ByteBuffer) throws -> JSONValue {
    try buffer.withUnsafeReadableBytes { raw in
        try JSONParser.parse(raw.assumingMemoryBound(to: UInt8.self))
    }
}

/// Parses `bytes` with Tailgate's own parser.
func parseJSON(bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
    let result = bytes.withUnsafeBufferPointer { buffer in
        Result { () throws(JSONParseError) in try JSONParser.parse(buffer) }
    }
    return try result.get()
}

/// Parses the readable bytes of `buffer` with Foundation's `JSONSerialization` (fragments allowed).
func foundationJSON(_ buffer: ByteBuffer) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView), options: [.fragmentsAllowed])
}

/// The `seq` of every record of a `{"type":"logs","records":[…]}` message.
func logsSeqs(_ payload: ByteBuffer) throws -> [Int] {
    let value = try parseJSON(payload)
    #expect(value["type"] == .string("logs"))
    guard case .array(let records)? = value["records"] else {
        Issue.record("no records array in \(String(buffer: payload))")
        return []
    }
    return records.map { $0["seq"]?.intValue ?? -1 }
}

/// The names of an object's members in the order they appear in the JSON text (top level only).
func topLevelKeys(_ text: String) -> [String] {
    var keys: [String] = []
    var depth = 0
    var inString = false
    var escaped = false
    var current = ""
    var lastString = ""
    for character in text {
        if inString {
            if escaped { escaped = false; current.append(character); continue }
            if character == "\\" { escaped = true; continue }
            if character == "\"" { inString = false; lastString = current; continue }
            current.append(character)
            continue
        }
        switch character {
        case "\"": inString = true; current = ""
        case "{", "[": depth += 1
        case "}", "]": depth -= 1
        case ":": if depth == 1 { keys.append(lastString) }
        default: break
        }
    }
    return keys
}

/// A batch of `count` records with seqs from `first`, each with message `"m<seq>"` padded to `padding` extra bytes.
func makeBatch(first: UInt64, count: Int, padding: Int = 0, timestamp: Timestamp = Timestamp(microseconds: 0)) -> Batch {
    var builder = BatchBuilder(firstSeq: first)
    for offset in 0..<count {
        let seq = first + UInt64(offset)
        builder.append(LogRecord(message: message(for: seq, padding: padding)), timestamp: timestamp)
    }
    return builder.finish()!
}

/// The message `makeBatch` gives the record with `seq`.
func message(for seq: UInt64, padding: Int = 0) -> String {
    "m\(seq)" + String(repeating: "x", count: padding)
}

/// Runs `body(index)` on `count` new threads (not the cooperative pool) that start together, and returns
/// when all of them have finished.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) async {
    let state = ThreadRun(count: count)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        state.setContinuation(continuation)
        for index in 0..<count {
            let thread = Thread {
                state.arriveAndWaitForAll()
                body(index)
                state.finished()
            }
            thread.start()
        }
    }
}

private final class ThreadRun: Sendable {
    private let waiting: Atomic<Int>
    private let running: Atomic<Int>
    private let continuation = Lock<CheckedContinuation<Void, Never>?>(nil)

    init(count: Int) {
        waiting = Atomic(count)
        running = Atomic(count)
    }

    func setContinuation(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    /// A start barrier, so that the threads really run at the same time.
    func arriveAndWaitForAll() {
        waiting.subtract(1, ordering: .acquiringAndReleasing)
        while waiting.load(ordering: .acquiring) > 0 { sched_yield() }
    }

    func finished() {
        if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            continuation.withLock { $0.take() }?.resume()
        }
    }
}

/// A rendering that passes the payload through and counts how often it was asked to render.
struct CountingRendering: BatchRendering {
    let key: Int
    let calls: Counter

    init(key: Int, calls: Counter = Counter()) {
        self.key = key
        self.calls = calls
    }

    func render(_ batch: Batch) -> ByteBuffer {
        calls.increment()
        var out = ByteBuffer()
        out.writeString("r\(key):")
        out.writeImmutableBuffer(batch.payload)
        return out
    }
}

/// A thread-safe counter.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    init() {}
    func increment() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// A subscriber that records what it is offered and lets a test await a condition on it.
final class Collector: BatchSubscriber, Sendable {
    enum Event: Equatable, Sendable {
        case batch(first: UInt64, last: UInt64)
        case end
    }

    struct State {
        var events: [Event] = []
        var rendered: [ByteBuffer] = []
        var lastSeq: UInt64 = 0
        var ended: Bool { events.contains(.end) }
        /// The seqs of the batches, in order of delivery.
        var seqs: [UInt64] {
            events.flatMap { event -> [UInt64] in
                if case .batch(let first, let last) = event { return Array(first...last) }
                return []
            }
        }
    }

    private struct Waiter {
        var condition: @Sendable (State) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    private let state = Lock<(state: State, waiters: [Waiter])>((State(), []))
    /// The loop the collector lives on; `nil`: the worker's.
    let loop: EventLoop?
    private let callsOffLoop = Atomic<Int>(0)

    /// Time each `offer` takes (spent spinning, as a socket write would).
    private let offerCost: Duration
    /// Called at the end of each `offer`, on the collector's loop.
    private let onOffer: (@Sendable (Batch) -> Void)?

    init(loop: EventLoop? = nil, offerCost: Duration = .zero, onOffer: (@Sendable (Batch) -> Void)? = nil) {
        self.loop = loop
        self.offerCost = offerCost
        self.onOffer = onOffer
    }

    /// How many calls arrived on another thread than the collector's loop.
    var offLoopCalls: Int { callsOffLoop.load(ordering: .relaxed) }

    /// The seq after the last batch offered: a batch offered twice would show as a repeated event.
    var nextSeq: UInt64 { state.withLock { $0.state.lastSeq + 1 } }

    func offer(_ batch: Batch, rendered: ByteBuffer) {
        if let loop, !loop.inEventLoop { callsOffLoop.add(1, ordering: .relaxed) }
        update { state in
            state.events.append(.batch(first: batch.firstSeq, last: batch.lastSeq))
            state.rendered.append(rendered)
            state.lastSeq = batch.lastSeq
        }
        if offerCost > .zero {
            let clock = ContinuousClock()
            let until = clock.now + offerCost
            while clock.now < until {}
        }
        onOffer?(batch)
    }

    func workerEnded() {
        if let loop, !loop.inEventLoop { callsOffLoop.add(1, ordering: .relaxed) }
        update { $0.events.append(.end) }
    }

    private func update(_ change: (inout State) -> Void) {
        let ready = state.withLock { locked -> [CheckedContinuation<Void, Never>] in
            change(&locked.state)
            var ready: [CheckedContinuation<Void, Never>] = []
            let current = locked.state
            locked.waiters.removeAll { waiter in
                guard waiter.condition(current) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Returns once `condition` holds for what has been collected.
    func wait(until condition: @escaping @Sendable (State) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let satisfied = state.withLock { locked -> Bool in
                if condition(locked.state) { return true }
                locked.waiters.append(Waiter(condition: condition, continuation: continuation))
                return false
            }
            if satisfied { continuation.resume() }
        }
        // Resumed through a continuation, which ThreadSanitizer cannot see into: taking the lock the
        // resumer held shows it what happened before.
        state.withLock { _ in }
    }

    /// Returns once a batch ending at `seq` or later has been offered.
    func wait(forSeq seq: UInt64) async {
        await wait { $0.lastSeq >= seq }
    }

    /// Returns once `workerEnded` has been called.
    func waitForEnd() async {
        await wait { $0.ended }
    }

    var current: State { state.withLock { $0.state } }

    /// Attaches this collector to `worker` on the worker's loop.
    func attach(to worker: Worker, rendering: BatchRendering = CountingRendering(key: 0)) async throws {
        let loop = self.loop ?? worker.loop
        try await loop.submit { worker.fanOut.add(self, rendering: rendering, on: loop) }.get()
    }
}

/// A value behind a lock, as a class so that escaping closures can share it.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Lock<Value>
    init(_ value: Value) { mutex = Lock(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// A deterministic generator for repeatable random tests (a 64-bit LCG, high bits folded in).
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state ^ (state >> 29)
    }
}
