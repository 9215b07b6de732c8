#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to standard error, whole, whatever else writes there.
func printError(_ message: String) {
    writeAll(2, Array((message + "\n").utf8))
}

/// Writes all of `bytes` to `fd`, ignoring failures (a closed terminal must not stop publishing).
func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) {
    var bytes = Array(bytes)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += written
    }
}
