import Dispatch
import Synchronization
import TailgateCore

/// The lines waiting for the gateway: bounded, never blocking the reader, never losing silently.
///
/// Readers `append` lines; the publisher `take`s them. When `capacity` lines wait already, a new line is
/// not kept but counted in a drop marker at its place in the order, which the publisher sends as one
/// `WARNING` record ("N lines dropped while the gateway was unreachable"). Tailgate's own notices
/// (exit status, unconfirmed lines) are always kept.
final class OutgoingQueue: Sendable {
    enum Entry: Sendable {
        case record(OutgoingRecord)
        /// `count` lines did not fit, the first of them read at `since`.
        case dropped(count: Int, since: Timestamp)

        /// The record to send for this entry.
        var record: OutgoingRecord {
            switch self {
            case .record(let record): record
            case .dropped(let count, let since): .dropped(count, at: since)
            }
        }
    }

    private struct State {
        var entries: [Entry] = []
        var head = 0
        var lines = 0
        var closed = false
        var waiting = false
        var droppedTotal = 0
    }

    /// The most program lines kept.
    let capacity: Int
    private let state = Lock(State())
    private let wakeUp = DispatchSemaphore(value: 0)

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds a line of the program's output, or counts it as dropped when the queue is full.
    func append(_ record: OutgoingRecord) {
        state.withLock { state in
            if state.lines >= capacity {
                state.droppedTotal += 1
                if case .dropped(let count, let since)? = state.entries.last, state.entries.count > state.head {
                    state.entries[state.entries.count - 1] = .dropped(count: count + 1, since: since)
                } else {
                    state.entries.append(.dropped(count: 1, since: record.timestamp))
                }
            } else {
                state.lines += 1
                state.entries.append(.record(record))
            }
            wakeWaiter(&state)
        }
    }

    /// Adds a notice of tailgate's own; it is kept whatever the capacity.
    func appendNotice(_ record: OutgoingRecord) {
        state.withLock { state in
            state.entries.append(.record(record))
            wakeWaiter(&state)
        }
    }

    /// Puts records back at the front, in order (those the gateway was shown not to have received).
    func putBack(_ records: [OutgoingRecord]) {
        guard !records.isEmpty else { return }
        state.withLock { state in
            state.entries.replaceSubrange(state.head..<state.head, with: records.map { .record($0) })
            state.lines += records.filter { $0.loggerName.isEmpty }.count
        }
    }

    /// No more lines will come.
    func close() {
        state.withLock { state in
            state.closed = true
            wakeWaiter(&state)
        }
    }

    /// Up to `max` entries, oldest first, without waiting.
    func take(max: Int) -> [Entry] {
        state.withLock { state in
            let count = min(max, state.entries.count - state.head)
            guard count > 0 else { return [] }
            let taken = Array(state.entries[state.head..<state.head + count])
            state.head += count
            for case .record(let record) in taken where record.loggerName.isEmpty { state.lines -= 1 }
            if state.head == state.entries.count {
                state.entries.removeAll(keepingCapacity: true)
                state.head = 0
            } else if state.head > 4096 && state.head * 2 > state.entries.count {
                state.entries.removeFirst(state.head)
                state.head = 0
            }
            return taken
        }
    }

    /// Whether entries wait, and whether input has ended.
    var status: (pending: Int, closed: Bool) {
        state.withLock { ($0.entries.count - $0.head, $0.closed) }
    }

    /// Lines dropped in all so far.
    var droppedTotal: Int { state.withLock { $0.droppedTotal } }

    /// Waits until an entry is added or input ends, at most `timeout` seconds (`nil`: no limit).
    /// Returns at once when entries wait or input has ended.
    func waitForEntries(timeout: Double?) {
        let mustWait = state.withLock { state -> Bool in
            if state.entries.count > state.head || state.closed { return false }
            state.waiting = true
            return true
        }
        guard mustWait else { return }
        let deadline: DispatchTime = timeout.map { .now() + $0 } ?? .distantFuture
        if wakeUp.wait(timeout: deadline) == .timedOut {
            let signalled = state.withLock { state -> Bool in
                defer { state.waiting = false }
                return !state.waiting
            }
            // A producer signalled between the time-out and the lock: take that signal back.
            if signalled { wakeUp.wait() }
        }
    }

    private func wakeWaiter(_ state: inout State) {
        if state.waiting {
            state.waiting = false
            wakeUp.signal()
        }
    }
}
