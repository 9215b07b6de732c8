import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The program `tailgate run` runs: spawned with its standard output and error on pipes — or on
/// pseudo-terminals (`--pty`) — and standard input inherited, and sent the SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT that tailgate receives.
///
/// It stays in tailgate's process group, so a terminal's Ctrl-C reaches it directly; signals that the
/// kernel sent for a terminal are therefore not forwarded a second time (`SignalWatcher.Delivery`).
final class ChildProcess {
    let pid: pid_t
    /// The read ends of the program's standard output and standard error.
    let stdoutFD: Int32
    let stderrFD: Int32

    /// Where the program writes its standard output and standard error.
    enum Output {
        /// Two pipes: most runtimes then buffer their output in blocks (see `LineBuffering`).
        case pipes
        /// Two pseudo-terminals (`PseudoTerminal`): the program believes it writes to a terminal.
        case terminals
    }

    /// How the program ended.
    enum Termination: Equatable {
        case exited(Int32)
        case signalled(Int32)

        /// The status a shell would report: the exit status, or 128 + the signal.
        var shellStatus: Int32 {
            switch self {
            case .exited(let status): status
            case .signalled(let signal): 128 + signal
            }
        }
    }

    /// Why the program could not be started.
    struct SpawnFailure: Error, CustomStringConvertible {
        var errorNumber: Int32
        var description: String { String(cString: strerror(errorNumber)) }
        /// 127 when the program was not found, 126 when it could not be executed (as shells do).
        var shellStatus: Int32 { errorNumber == ENOENT ? 127 : 126 }
    }

    static let forwardedSignals = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// Starts `arguments[0]` (looked up in `PATH`) with `arguments`, its output on `output`, with
    /// tailgate's environment and `environment` over it.
    init(arguments: [String], output: Output = .pipes, environment: [String: String] = [:]) throws(SpawnFailure) {
        // (read end for tailgate, write end for the program) for its stdout, then its stderr
        var ends: [(reader: Int32, writer: Int32)] = []
        do throws(SpawnFailure) {
            for _ in 0..<2 {
                switch output {
                case .pipes:
                    var fds: [Int32] = [0, 0]
                    guard pipe(&fds) == 0 else { throw SpawnFailure(errorNumber: errno) }
                    // Only the copies made for the program (on its 1 and 2) survive exec.
                    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                    ends.append((fds[0], fds[1]))
                case .terminals:
                    let terminal = try PseudoTerminal.open()
                    ends.append((terminal.controller, terminal.terminal))
                }
            }
        } catch {
            for end in ends { close(end.reader); close(end.writer) }
            throw error
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, ends[0].writer, 1)
        posix_spawn_file_actions_adddup2(&actions, ends[1].writer, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // tailgate ignores or handles these; the program gets the defaults and an empty signal mask.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in Self.forwardedSignals + [SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let added: [UnsafeMutablePointer<CChar>?] = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        defer { added.forEach { free($0) } }
        let envp = Self.inheritedEnvironment(without: Array(environment.keys)) + added + [nil]
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        for end in ends { close(end.writer) }
        guard status == 0 else {
            for end in ends { close(end.reader) }
            throw SpawnFailure(errorNumber: status)
        }
        pid = child
        stdoutFD = ends[0].reader
        stderrFD = ends[1].reader
    }

    /// tailgate's own environment entries (as they are, whatever their bytes), but those of `names`.
    private static func inheritedEnvironment(without names: [String]) -> [UnsafeMutablePointer<CChar>?] {
        var entries: [UnsafeMutablePointer<CChar>?] = []
        var entry = environ
        while let pointer = entry.pointee {
            if !names.contains(where: { strncmp(pointer, $0 + "=", $0.utf8.count + 1) == 0 }) { entries.append(pointer) }
            entry += 1
        }
        return entries
    }

    /// Forwards the signals tailgate receives to this program from now on (one program per process).
    func forwardSignals() {
        forwardingTarget.store(pid, ordering: .sequentiallyConsistent)
        let pending = pendingSignal.exchange(0, ordering: .sequentiallyConsistent)
        if pending != 0 { kill(pid, pending) }
    }

    /// Waits for the program to end.
    func wait() -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return .exited(255) }
        }
        let low = status & 0x7F
        return low == 0 ? .exited((status >> 8) & 0xFF) : .signalled(low)
    }

    /// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the program from now on. Call before it starts:
    /// a signal that comes before it exists is delivered to it once it does.
    static func installSignalForwarding() {
        SignalWatcher.watch(forwardedSignals) { delivery in
            // The kernel sent it to the terminal's whole foreground group: the program has it already.
            if delivery.fromTerminal { return }
            let target = forwardingTarget.load(ordering: .sequentiallyConsistent)
            if target > 0 {
                kill(target, delivery.signal)
            } else {
                pendingSignal.store(delivery.signal, ordering: .sequentiallyConsistent)
            }
        }
    }

    /// A readable name for a signal number (`SIGTERM`), or nil.
    static func name(ofSignal number: Int32) -> String? {
        let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL",
                                      SIGABRT: "SIGABRT", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
                                      SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGBUS: "SIGBUS",
                                      SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2", SIGTRAP: "SIGTRAP", SIGXCPU: "SIGXCPU"]
        return names[number]
    }
}

/// The process signals are forwarded to (0 before it exists).
private let forwardingTarget = Atomic<pid_t>(0)
/// A signal that came before the program existed.
private let pendingSignal = Atomic<Int32>(0)
