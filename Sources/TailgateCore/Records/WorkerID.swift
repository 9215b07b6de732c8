/// The name of a worker: `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`, e.g. `002050.SZ` or `VnpyWorker-7`.
///
/// A `WorkerID` can only be made from a string that matches the pattern, so code that holds one never
/// needs to check it again.
public struct WorkerID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The id's text.
    public let rawValue: String

    /// The longest id accepted, in characters (all ASCII).
    public static let maxLength = 128

    /// Makes an id, or returns `nil` when `rawValue` does not match the pattern.
    public init?(_ rawValue: some StringProtocol) {
        guard Self.isValid(rawValue.utf8) else { return nil }
        self.rawValue = String(rawValue)
    }

    /// Whether `bytes` form a valid worker id.
    public static func isValid(_ bytes: some Collection<UInt8>) -> Bool {
        guard let first = bytes.first, bytes.count <= maxLength, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
            || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    public var description: String { rawValue }

    public static func < (lhs: WorkerID, rhs: WorkerID) -> Bool { lhs.rawValue < rhs.rawValue }
}
