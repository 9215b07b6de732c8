// hb-peer: a Hummingbird WebSocket broadcast server, written the way an application developer would:
// one generator task per worker appends records at the target rate (1 ms ticks at >= 2000 rec/s, 10 ms
// otherwise, like Tailgate's demo), encodes each tick's batch once as a `logs` message and yields the
// String to every subscriber's AsyncStream; each connection's handler writes what its stream gives it.
//
// Usage: hb-peer --port P [--workers N] [--rate R]
// Streams: ws://127.0.0.1:P/ws/workers/demo-K  (hello first, then {"type":"logs","records":[...]})
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Synchronization

struct Options {
    var port = 8090
    var workers = 1
    var rate = 100.0
    init() {
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let a = args.next() {
            switch a {
            case "--port": port = Int(args.next()!)!
            case "--workers": workers = Int(args.next()!)!
            case "--rate": rate = Double(args.next()!)!
            case "--help", "-h":
                print("usage: hb-peer --port P [--workers N] [--rate R]"); exit(0)
            default: FileHandle.standardError.write("unknown argument \(a)\n".data(using: .utf8)!); exit(2)
            }
        }
    }
}

final class Hub: Sendable {
    struct State {
        var subscribers: [Int: AsyncStream<String>.Continuation] = [:]
        var nextID = 0
        var nextSeq = 1
    }
    let id: String
    let state = Mutex(State())
    init(id: String) { self.id = id }

    /// Registers a subscriber; returns its stream, id and the first seq it will get.
    func subscribe() -> (AsyncStream<String>, Int, Int) {
        let (stream, cont) = AsyncStream<String>.makeStream()
        return state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.subscribers[id] = cont
            return (stream, id, s.nextSeq)
        }
    }
    func unsubscribe(_ id: Int) { _ = state.withLock { $0.subscribers.removeValue(forKey: id) } }

    func publish(count: Int) {
        state.withLock { s in
            var msg = "{\"type\":\"logs\",\"records\":["
            msg.reserveCapacity(count * 230 + 32)
            for i in 0..<count {
                if i > 0 { msg += "," }
                msg += record(seq: s.nextSeq)
                s.nextSeq += 1
            }
            msg += "]}"
            for c in s.subscribers.values { c.yield(msg) }
        }
    }
}

let messages = [
    ("DEBUG", "bar 002050.SZ 09:01 o=9.97 h=10.00 l=9.95 c=9.98 v=4700", "on_bar", 88),
    ("INFO", "signal LONG 002050.SZ strength=0.74 (fast MA crossed slow MA)", "generate_signal", 131),
    ("INFO", "order submitted id=A-10492 LONG 002050.SZ 1000 @ 9.98 limit", "send_order", 212),
    ("WARNING", "slippage 0.03 above threshold on fill id=A-10492", "on_trade", 277),
]

func isoNow() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = time_t(ts.tv_sec)
    var tm = tm()
    gmtime_r(&t, &tm)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1,
                  Int(tm.tm_mday), Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec), Int(ts.tv_nsec / 1000))
}

func record(seq: Int) -> String {
    let m = messages[seq % messages.count]
    return "{\"seq\":\(seq),\"timestamp\":\"\(isoNow())\",\"level\":\"\(m.0)\",\"message\":\"\(m.1)\",\"logger_name\":\"TurtleBreakout\",\"module\":\"strategies.turtlebreakout\",\"func_name\":\"\(m.2)\",\"line_no\":\(m.3)}"
}

let opts = Options()
let hubs: [String: Hub] = Dictionary(uniqueKeysWithValues: (1...max(1, opts.workers)).map { ("demo-\($0)", Hub(id: "demo-\($0)")) })

for hub in hubs.values {
    let rate = opts.rate
    Task.detached {
        let tick: Duration = rate >= 2000 ? .milliseconds(1) : .milliseconds(10)
        let start = ContinuousClock.now
        var published = 0
        while true {
            try? await Task.sleep(for: tick)
            let elapsed = ContinuousClock.now - start
            let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let due = Int(secs * rate)
            if due > published { hub.publish(count: due - published); published = due }
        }
    }
}

let router = Router()
router.get("/healthz") { _, _ in "{\"status\":\"ok\"}" }
let app = Application(
    router: router,
    server: .http1WebSocketUpgrade { request, channel, logger in
        let prefix = "/ws/workers/"
        let path = String((request.path ?? "").split(separator: "?", maxSplits: 1).first ?? "")
        guard path.hasPrefix(prefix), let hub = hubs[String(path.dropFirst(prefix.count))] else { return .dontUpgrade }
        return .upgrade([:]) { inbound, outbound, context in
            let (stream, id, from) = hub.subscribe()
            defer { hub.unsubscribe(id) }
            try await outbound.write(.text("{\"type\":\"hello\",\"worker\":\"\(hub.id)\",\"state\":\"running\",\"replay_from\":\(from),\"server_time\":\"\(isoNow())\"}"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for try await _ in inbound {} }
                group.addTask { for await msg in stream { try await outbound.write(.text(msg)) } }
                try await group.next()
                group.cancelAll()
            }
        }
    },
    configuration: .init(address: .hostname("127.0.0.1", port: opts.port))
)
print("hb-peer listening on http://127.0.0.1:\(opts.port)/")
try await app.runService()
