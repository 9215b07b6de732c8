#if TAILGATE_TSAN
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The lock that guards every piece of shared state in Tailgate.
///
/// In a ThreadSanitizer build (`-DTAILGATE_TSAN`, see README "Race detection") it is a pthread mutex,
/// whose happens-before edges ThreadSanitizer understands, so that the sanitizer reports only real
/// races. Everywhere else it is `Synchronization.Mutex` itself (a type alias): no cost.
public struct Lock<Value: ~Copyable>: ~Copyable, @unchecked Sendable {
    private final class Storage {
        let mutex: UnsafeMutablePointer<pthread_mutex_t>
        var value: Value

        init(_ value: consuming Value) {
            mutex = .allocate(capacity: 1)
            mutex.initialize(to: pthread_mutex_t())
            pthread_mutex_init(mutex, nil)
            self.value = value
        }

        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
        }
    }

    private let storage: Storage

    public init(_ initialValue: consuming sending Value) {
        storage = Storage(initialValue)
    }

    /// Runs `body` with exclusive access to the value.
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(storage.mutex)
        defer { pthread_mutex_unlock(storage.mutex) }
        return try body(&storage.value)
    }
}
#else
import Synchronization

/// The lock that guards every piece of shared state in Tailgate: `Synchronization.Mutex`, except in a
/// ThreadSanitizer build (`-DTAILGATE_TSAN`), where it is a pthread mutex that the sanitizer
/// understands (ThreadSanitizer on Linux does not see `Mutex`'s futex, and reports every use as a race).
public typealias Lock<Value: ~Copyable> = Mutex<Value>
#endif
