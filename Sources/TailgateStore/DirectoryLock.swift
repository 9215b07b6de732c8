#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import TailgateCore

/// An exclusive `flock` on `DIR/lock`, held while a store uses the directory: two gateways (or two
/// stores in one process) writing the same runs would interleave their frames.
final class DirectoryLock: Sendable {
    private let descriptor: Lock<Int32>

    /// Takes the lock of `directory`, or throws `StoreError.directoryInUse`.
    init(directory: String) throws(StoreError) {
        let path = directory + "/lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw .directoryUnusable(path: directory, reason: "cannot open \(path): \(StoreError.text(ofErrno: errno))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK { throw .directoryInUse(path: directory) }
            throw .directoryUnusable(path: directory, reason: "cannot lock \(path): \(StoreError.text(ofErrno: code))")
        }
        self.descriptor = Lock(descriptor)
    }

    deinit {
        release()
    }

    /// Gives the lock up (closing its file); idempotent.
    func release() {
        descriptor.withLock { descriptor in
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }
    }
}
