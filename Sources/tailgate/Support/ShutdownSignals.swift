import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM for `tailgate serve`: the first starts a graceful shutdown (yielded to the
/// stream); a second one while it runs ends the process at once (exit status 128 + the signal), for
/// an operator or supervisor that will not wait.
enum ShutdownSignals {
    static func watch(_ signals: [Int32] = [SIGINT, SIGTERM]) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            SignalWatcher.watch(signals) { delivery in
                if received.add(1, ordering: .sequentiallyConsistent).newValue == 1 {
                    continuation.yield(delivery.signal)
                } else {
                    let message = "tailgate: second signal \(delivery.signal) during shutdown: exiting at once\n"
                    _ = message.withCString { write(2, $0, strlen($0)) }
                    _exit(128 + delivery.signal)
                }
            }
        }
    }
}

/// Shutdown signals received so far.
private let received = Atomic<Int>(0)
