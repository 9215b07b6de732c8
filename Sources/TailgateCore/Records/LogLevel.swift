/// The severity of a record, as it appears on the wire.
public enum LogLevel: String, CaseIterable, Comparable, Sendable {
    case trace = "TRACE"
    case debug = "DEBUG"
    case info = "INFO"
    case notice = "NOTICE"
    case warning = "WARNING"
    case error = "ERROR"
    case critical = "CRITICAL"

    /// Reads a level name as publishers write it: case-insensitive, with the common aliases
    /// `WARN`, `ERR`, `FATAL` and `CRIT`. Returns `nil` for anything else.
    public init?(name: some StringProtocol) {
        var name = String(name)
        guard let level = name.withUTF8({ LogLevel(nameUTF8: $0) }) else { return nil }
        self = level
    }

    /// Reads a level name from its UTF-8 bytes, as `init(name:)` does (the ingest path: no string is made).
    public init?(nameUTF8 bytes: UnsafeBufferPointer<UInt8>) {
        // ASCII-only upper-casing into a fixed word: "ınfo" (dotless ı) is not INFO.
        guard bytes.count >= 3, bytes.count <= 8 else { return nil }
        var word: UInt64 = 0
        for (offset, byte) in bytes.enumerated() {
            guard byte != 0 else { return nil }  // "ERR\0" must not pack like "ERR"
            let upper = byte >= 0x61 && byte <= 0x7A ? byte - 0x20 : byte
            word |= UInt64(upper) << (8 * UInt64(offset))
        }
        guard let level = Self.names.first(where: { $0.word == word })?.level else { return nil }
        self = level
    }

    /// Every accepted name (with the aliases), packed by `word(_:)`.
    private static let names: [(word: UInt64, level: LogLevel)] = [
        (word("INFO"), .info), (word("DEBUG"), .debug), (word("WARNING"), .warning), (word("ERROR"), .error),
        (word("TRACE"), .trace), (word("NOTICE"), .notice), (word("CRITICAL"), .critical), (word("WARN"), .warning),
        (word("ERR"), .error), (word("CRIT"), .critical), (word("FATAL"), .critical),
    ]

    /// An upper-case name of up to eight ASCII letters packed little-endian into a word.
    private static func word(_ name: StaticString) -> UInt64 {
        var word: UInt64 = 0
        for offset in 0..<name.utf8CodeUnitCount {
            word |= UInt64(name.utf8Start[offset]) << (8 * UInt64(offset))
        }
        return word
    }

    /// The wire name as a static string (no allocation when encoding).
    var wireName: StaticString {
        switch self {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    private var rank: Int {
        switch self {
        case .trace: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .critical: 6
        }
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rank < rhs.rank }
}
