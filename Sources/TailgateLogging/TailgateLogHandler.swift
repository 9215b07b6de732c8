import Logging
import TailgateCore

/// A swift-log `LogHandler` that publishes every log line into a Tailgate worker.
///
/// Level, message and metadata are kept; `source`, `function` and `line` become the record's
/// `module`, `func_name` and `line_no`, and the logger's label its `logger_name`. Combine it with a
/// console handler to get both outputs, as the strategy workers always had:
///
/// ```swift
/// let worker = try bus.register(WorkerID("002050.SZ")!)
/// LoggingSystem.bootstrap { label in
///     MultiplexLogHandler([
///         StreamLogHandler.standardOutput(label: label),
///         TailgateLogHandler(label: label, worker: worker),
///     ])
/// }
/// ```
public struct TailgateLogHandler: LogHandler {
    /// The worker that receives the records.
    public let worker: Worker
    /// The logger's label, published as `logger_name`.
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    /// Provides metadata from the task context (swift-log's metadata providers).
    public var metadataProvider: Logger.MetadataProvider?

    /// Makes a handler for the logger `label` that publishes into `worker`.
    public init(label: String, worker: Worker, logLevel: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.worker = worker
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        worker.publish(LogRecord(
            level: Self.level(event.level),
            message: event.message.description,
            loggerName: label,
            module: event.source,
            funcName: event.function,
            lineNo: Int(event.line),
            metadata: merged.isEmpty ? nil : merged.mapValues { $0.description }
        ))
    }

    /// swift-log's levels onto the wire's.
    public static func level(_ level: Logger.Level) -> LogLevel {
        switch level {
        case .trace: .trace
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}
