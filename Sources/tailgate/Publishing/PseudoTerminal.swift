#if canImport(Glibc)
import Glibc
#endif

/// A pseudo-terminal for one output stream of the program `tailgate run --pty` starts: the program
/// writes to the terminal side (so `isatty` is true: C's stdio and Python flush per line, and programs
/// that colour only on a terminal keep their colours), tailgate reads the other side.
///
/// The terminal does not translate `\n` into `\r\n` (ONLCR off), so the bytes read are the bytes
/// written. It has the size of tailgate's own terminal, when tailgate has one. It is not made the
/// program's controlling terminal: the program stays in tailgate's session and process group, so
/// signals reach it as they do without `--pty`.
struct PseudoTerminal {
    /// The side tailgate reads (close-on-exec).
    let controller: Int32
    /// The side the program writes to (close-on-exec here; duplicated onto the program's 1 or 2).
    let terminal: Int32

    /// Opens one; throws the `errno` of the failure.
    static func open() throws(ChildProcess.SpawnFailure) -> PseudoTerminal {
        var controller: Int32 = -1
        var terminal: Int32 = -1
        var size = winsize()
        let hasSize = [1, 2, 0].contains { fd in ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 }
        let opened = hasSize ? openpty(&controller, &terminal, nil, nil, &size) : openpty(&controller, &terminal, nil, nil, nil)
        guard opened == 0 else { throw ChildProcess.SpawnFailure(errorNumber: errno) }
        for fd in [controller, terminal] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var settings = termios()
        if tcgetattr(terminal, &settings) == 0 {
            settings.c_oflag &= ~tcflag_t(ONLCR)
            _ = tcsetattr(terminal, TCSANOW, &settings)
        }
        return PseudoTerminal(controller: controller, terminal: terminal)
    }
}
