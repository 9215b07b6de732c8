#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the store cannot start, or why one of its file operations failed. Every case names the path
/// concerned, so that the message alone tells an operator where to look.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The data directory cannot be created, opened or written.
    case directoryUnusable(path: String, reason: String)
    /// Another store (in this process or another one) already uses the data directory.
    case directoryInUse(path: String)
    /// A system call on a file failed with `errno`.
    case io(operation: String, path: String, errno: Int32)
    /// A file is not in the store's format and cannot be used.
    case corrupt(path: String, reason: String)
    /// The store was closed.
    case closed

    public var description: String {
        switch self {
        case .directoryUnusable(let path, let reason):
            return "data directory \(path) cannot be used: \(reason)"
        case .directoryInUse(let path):
            return "data directory \(path) is used by another Tailgate store"
        case .io(let operation, let path, let code):
            return "\(operation) \(path): \(Self.text(ofErrno: code))"
        case .corrupt(let path, let reason):
            return "\(path) is damaged: \(reason)"
        case .closed:
            return "the store is closed"
        }
    }

    /// Whether the error says that a file or folder does not exist (deleted by retention meanwhile).
    var isNotFound: Bool {
        if case .io(_, _, let code) = self { return code == ENOENT }
        return false
    }

    /// The system's text for an `errno` value.
    static func text(ofErrno code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}
