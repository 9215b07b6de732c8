/// One log line as a publisher hands it over, before it has a sequence number.
///
/// The fields mirror Python's `logging.LogRecord` as the original strategy workers sent them:
/// `logger_name`, `module`, `func_name` and `line_no` say where the line came from.
public struct LogRecord: Sendable, Equatable {
    /// The severity.
    public var level: LogLevel
    /// The text of the line. ANSI escape codes are kept as they are.
    public var message: String
    /// The logger that produced the line (Python's `name`, swift-log's label).
    public var loggerName: String
    /// The module or source that produced the line.
    public var module: String
    /// The function that produced the line.
    public var funcName: String
    /// The source line that produced the line.
    public var lineNo: Int
    /// Extra key/value pairs; encoded with keys in sorted order.
    public var metadata: [String: String]?
    /// When the line was published. `nil` means "now": the worker stamps it as it accepts the line.
    public var timestamp: Timestamp?

    /// Makes a record; only `message` is required.
    public init(
        level: LogLevel = .info,
        message: String,
        loggerName: String = "",
        module: String = "",
        funcName: String = "",
        lineNo: Int = 0,
        metadata: [String: String]? = nil,
        timestamp: Timestamp? = nil
    ) {
        self.level = level
        self.message = message
        self.loggerName = loggerName
        self.module = module
        self.funcName = funcName
        self.lineNo = lineNo
        self.metadata = metadata
        self.timestamp = timestamp
    }

    /// A rough size in bytes, used to bound memory before the record is encoded.
    public var estimatedSize: Int {
        var size = 160 + message.utf8.count + loggerName.utf8.count + module.utf8.count + funcName.utf8.count
        if let metadata {
            for (key, value) in metadata { size += key.utf8.count + value.utf8.count + 6 }
        }
        return size
    }
}
