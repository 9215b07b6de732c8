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
        // ASCII-only upper-casing: "ınfo" (dotless ı) is not INFO.
        let upper = String(decoding: name.utf8.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, as: UTF8.self)
        switch upper {
        case "TRACE": self = .trace
        case "DEBUG": self = .debug
        case "INFO": self = .info
        case "NOTICE": self = .notice
        case "WARNING", "WARN": self = .warning
        case "ERROR", "ERR": self = .error
        case "CRITICAL", "CRIT", "FATAL": self = .critical
        default: return nil
        }
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
