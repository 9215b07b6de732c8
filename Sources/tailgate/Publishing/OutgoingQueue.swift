import Synchronization
import TailgateCore

/// The lines on their way to the gateway, numbered: bounded, never blocking the reader, never losing
/// silently, and holding every line until the gateway has confirmed it.
///
/// Every entry gets the next **offset** (1, 2, 3, … for the process's life) when it is appended, so the
/// entries held always have consecutive offsets. The publisher `take`s entries to send (a cursor moves
/// past them), removes them with `confirm(through:)` once an answer says the gateway has them, and
/// `rewind`s the cursor to the oldest entry held when a connection broke with entries unconfirmed.
///
/// When `capacity` program lines wait to be sent already, a new line is not kept but counted in a drop
/// marker at its place in the order — one entry, one offset — which is sent as one `WARNING` record
/// ("N lines dropped while the gateway was unreachable"). Besides those, the queue holds the entries
/// sent and not yet confirmed (one body: at most `GatewayPublisher.Settings.maxBodyRecords`), so what
/// it holds stays bounded. Tailgate's own notices (the exit status, rejected lines) are always kept.
final class OutgoingQueue: Sendable {
    /// One numbered entry.
    struct Entry: Sendable {
        enum Content: Sendable {
            case record(OutgoingRecord)
            /// `count` lines did not fit, the first of them read at `since`.
            case dropped(count: Int, since: Timestamp)
        }

        var offset: UInt64
        var content: Content

        /// The record to send for this entry.
        var record: OutgoingRecord {
            switch content {
            case .record(let record): record
            case .dropped(let count, let since): .dropped(count, at: since)
            }
        }

        /// Whether it is a line of the program's output (which counts against `capacity`).
        var isProgramLine: Bool {
            if case .record(let record) = content { return record.loggerName.isEmpty }
            return false
        }
    }

    /// How much the queue holds.
    struct Status {
        /// Entries not yet confirmed by the gateway (sent or not).
        var held: Int
        /// Entries not yet sent on the current connection.
        var unsent: Int
        /// Whether input has ended.
        var closed: Bool
    }

    private struct State {
        /// `entries[head...]` are held; `entries[cursor...]` are not sent yet.
        var entries: [Entry] = []
        var head = 0
        var cursor = 0
        /// Program lines not sent yet (`entries[cursor...]`).
        var lines = 0
        /// The offset the next appended entry gets.
        var nextOffset: UInt64 = 1
        /// The highest offset ever sent: a drop marker sent once is never counted up again.
        var highestSent: UInt64 = 0
        var closed = false
        /// Called (once) when an entry to send is appended or input ends.
        var waiter: (@Sendable () -> Void)?

        mutating func append(_ content: Entry.Content) {
            entries.append(Entry(offset: nextOffset, content: content))
            nextOffset += 1
        }

        mutating func takeWaiter() -> (@Sendable () -> Void)? {
            defer { waiter = nil }
            return waiter
        }
    }

    /// The most program lines waiting to be sent.
    let capacity: Int
    private let state = Lock(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds a line of the program's output, or counts it as dropped when the queue is full.
    func append(_ record: OutgoingRecord) {
        let waiter = state.withLock { state in
            if state.lines >= capacity {
                if let last = state.entries.last, state.entries.count > state.head, last.offset > state.highestSent,
                   case .dropped(let count, let since) = last.content {
                    state.entries[state.entries.count - 1].content = .dropped(count: count + 1, since: since)
                } else {
                    state.append(.dropped(count: 1, since: record.timestamp))
                }
            } else {
                state.lines += 1
                state.append(.record(record))
            }
            return state.takeWaiter()
        }
        waiter?()
    }

    /// Adds a notice of tailgate's own; it is kept whatever the capacity.
    func appendNotice(_ record: OutgoingRecord) {
        let waiter = state.withLock { state in
            state.append(.record(record))
            return state.takeWaiter()
        }
        waiter?()
    }

    /// No more lines will come.
    func close() {
        let waiter = state.withLock { state in
            state.closed = true
            return state.takeWaiter()
        }
        waiter?()
    }

    /// The offset of the next entry `take` returns (of the next one appended, when none waits).
    var nextUnsentOffset: UInt64 {
        state.withLock { $0.cursor < $0.entries.count ? $0.entries[$0.cursor].offset : $0.nextOffset }
    }

    /// Up to `max` entries not sent yet, oldest first, without waiting; they stay held until confirmed.
    func take(max: Int) -> [Entry] {
        state.withLock { state in
            let count = min(max, state.entries.count - state.cursor)
            guard count > 0 else { return [] }
            let taken = Array(state.entries[state.cursor..<state.cursor + count])
            state.cursor += count
            state.lines -= taken.count(where: { $0.isProgramLine })
            state.highestSent = Swift.max(state.highestSent, taken[taken.count - 1].offset)
            return taken
        }
    }

    /// Forgets the entries with offsets up to `offset` (the gateway has them); returns how many.
    @discardableResult
    func confirm(through offset: UInt64) -> Int {
        state.withLock { state in
            guard state.head < state.entries.count, offset >= state.entries[state.head].offset else { return 0 }
            let count = Int(min(offset - state.entries[state.head].offset + 1, UInt64(state.entries.count - state.head)))
            if state.head + count > state.cursor {
                state.lines -= state.entries[state.cursor..<state.head + count].count(where: { $0.isProgramLine })
            }
            state.head += count
            state.cursor = Swift.max(state.cursor, state.head)
            if state.head == state.entries.count {
                state.entries.removeAll(keepingCapacity: true)
                state.head = 0
                state.cursor = 0
            } else if state.head > 4096 && state.head * 2 > state.entries.count {
                state.entries.removeFirst(state.head)
                state.cursor -= state.head
                state.head = 0
            }
            return count
        }
    }

    /// Makes every entry held unsent again (a new connection starts from the oldest unconfirmed line).
    func rewind() {
        state.withLock { state in
            state.lines += state.entries[state.head..<state.cursor].count(where: { $0.isProgramLine })
            state.cursor = state.head
        }
    }

    /// What the queue holds, and whether input has ended.
    var status: Status {
        state.withLock { Status(held: $0.entries.count - $0.head, unsent: $0.entries.count - $0.cursor, closed: $0.closed) }
    }

    /// Calls `wake` once, as soon as an entry waits to be sent or input has ended — at once (on this
    /// thread) when that is so already. A later call replaces a `wake` not yet called. `wake` is called
    /// on the thread that appends, outside the lock: it should only hand the news on (to an event loop).
    func notifyWhenEntries(_ wake: @escaping @Sendable () -> Void) {
        let ready = state.withLock { state -> Bool in
            if state.entries.count > state.cursor || state.closed {
                state.waiter = nil
                return true
            }
            state.waiter = wake
            return false
        }
        if ready { wake() }
    }
}
