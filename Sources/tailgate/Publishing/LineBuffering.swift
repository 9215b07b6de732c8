#if canImport(Glibc)
import Glibc
#endif

/// The environment switches that make common runtimes write their output as they go when it is a
/// pipe, which `tailgate run` sets for its program unless `--no-line-buffered` is given.
///
/// A program's output on a pipe is often held back in blocks (8 KiB or so) until the buffer fills or
/// the program ends, so a live console would show it in bursts. Python does this, and
/// `PYTHONUNBUFFERED=1` stops it (for the program and any Python it starts). Node.js, Go, Rust, Java and
/// .NET already write each line as it is printed. C programs (stdio), Perl and Ruby have no such
/// switch: for them, `--pty` gives the program a terminal, on which they write line by line.
enum LineBuffering {
    /// The switches, by runtime.
    static let switches: [(variable: String, value: String)] = [
        ("PYTHONUNBUFFERED", "1"),
    ]

    /// The switches not set already in tailgate's environment (a variable set, even empty, is left as is).
    static func environment() -> [String: String] {
        var variables: [String: String] = [:]
        for entry in switches where getenv(entry.variable) == nil {
            variables[entry.variable] = entry.value
        }
        return variables
    }
}
