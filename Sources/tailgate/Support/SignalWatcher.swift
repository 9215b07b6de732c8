import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The command line's one way of handling signals: `sigaction` handlers that only write the signal to
/// a pipe (about all that is safe inside a handler), and a thread that reads the pipe and calls the
/// Swift handler given to `watch`. A signal caught from the moment `watch` returns is never lost.
enum SignalWatcher {
    /// A signal that arrived.
    struct Delivery: Sendable {
        var signal: Int32
        /// The kernel sent it to the terminal's whole foreground process group (Ctrl-C, Ctrl-\, a
        /// hang-up): a program `tailgate run` started in that group got it too.
        var fromTerminal: Bool
    }

    /// Handles `signals` with `handler` from now on, on a background thread; SIGPIPE is ignored (a
    /// closed terminal or socket is no reason to stop). Call once per process.
    static func watch(_ signals: [Int32], handler: @escaping @Sendable (Delivery) -> Void) {
        signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            printError("tailgate: cannot watch signals: \(String(cString: strerror(errno)))")
            return
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        pipeWriteEnd.store(fds[1], ordering: .sequentiallyConsistent)
        let readEnd = fds[0]
        let thread = DispatchQueue(label: "tailgate.signals")
        thread.async {
            var message: [UInt8] = [0, 0]
            while true {
                let count = read(readEnd, &message, 2)
                if count < 0 && errno == EINTR { continue }
                guard count == 2 else { return }
                handler(Delivery(signal: Int32(message[0]), fromTerminal: message[1] == 1))
            }
        }
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { signalNumber, info, _ in
            let fromTerminal: UInt8 = (info?.pointee.si_code ?? 0) == 0x80 /* SI_KERNEL */ ? 1 : 0
            var message: (UInt8, UInt8) = (UInt8(truncatingIfNeeded: signalNumber), fromTerminal)
            let savedErrno = errno
            _ = withUnsafeBytes(of: &message) { write(pipeWriteEnd.load(ordering: .relaxed), $0.baseAddress, 2) }
            errno = savedErrno
        }
        action.sa_flags = SA_SIGINFO | SA_RESTART
        sigemptyset(&action.sa_mask)
        for signalNumber in signals { sigaction(signalNumber, &action, nil) }
    }

    /// Waits for the first of `signals` (SIGINT and SIGTERM by default) and returns it.
    static func firstOf(_ signals: [Int32] = [SIGINT, SIGTERM]) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            watch(signals) { continuation.yield($0.signal) }
        }
    }
}

/// The pipe the signal handlers write to.
private let pipeWriteEnd = Atomic<Int32>(-1)
