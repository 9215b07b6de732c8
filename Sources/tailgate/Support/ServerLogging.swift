import ArgumentParser
import Foundation
import Logging
import TailgateCore
import TailgateLogging
#if canImport(Glibc)
import Glibc
#endif

/// How `tailgate serve` writes its log lines (to standard error).
enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// `2026-11-30T08:01:02+0000 info tailgate: key=value message`, swift-log's console format.
    case text
    /// One JSON object per line, for log shippers: `{"timestamp":…,"level":…,"logger":…,"message":…,"metadata":{…}}`.
    case json
}

/// `--log-level`: swift-log's level names.
enum LogLevelArgument {
    static func parse(_ text: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }
}

/// The command line's logging, set up once per process: every `Logger` goes to standard error in
/// the chosen format and, once `publish(into:)` names a worker (`--self-worker`), also into it.
enum ServerLogging {
    /// The worker receiving the gateway's own log lines, once there is one.
    static let selfWorker = Lock<Worker?>(nil)

    /// Bootstraps swift-log. Call before any `Logger` is made.
    static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            let console: LogHandler = switch format {
            case .text: ConsoleLogHandler(label: label, json: false)
            case .json: ConsoleLogHandler(label: label, json: true)
            }
            var handler = MultiplexLogHandler([console, SelfWorkerLogHandler(label: label)])
            handler.logLevel = level
            return handler
        }
    }

    /// Lines written before `release()`: held so that the start-up line is the first one printed
    /// (supervisors and scripts wait for it); `nil` once released.
    private static let held = Lock<[String]?>([])

    /// Writes `line` to standard error, or holds it until `release()`.
    static func emit(_ line: String) {
        let write = held.withLock { lines -> Bool in
            guard lines != nil else { return true }
            lines!.append(line)
            return false
        }
        if write { ConsoleLogHandler.write(line) }
    }

    /// Writes the held lines and every line from now on.
    static func release() {
        let lines = held.withLock { lines -> [String] in
            defer { lines = nil }
            return lines ?? []
        }
        for line in lines { ConsoleLogHandler.write(line) }
    }

    /// From now on, log lines are also published into `worker`.
    static func publish(into worker: Worker?) {
        selfWorker.withLock { $0 = worker }
    }
}

/// Publishes into `ServerLogging.selfWorker` when there is one (through `TailgateLogHandler`).
struct SelfWorkerLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard let worker = ServerLogging.selfWorker.withLock({ $0 }), !worker.isStopping else { return }
        var handler = TailgateLogHandler(label: label, worker: worker, logLevel: logLevel)
        handler.metadata = metadata
        handler.log(event: event)
    }
}

/// Log lines on standard error. As JSON, one object per line: `timestamp` (RFC 3339, UTC,
/// microseconds), `level`, `logger`, `message`, `metadata` (an object of strings, when there is any)
/// and `source`. As text: `2026-11-30T08:01:02.123456Z notice tailgate: message key=value …`.
struct ConsoleLogHandler: LogHandler {
    let label: String
    let json: Bool
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, json: Bool) {
        self.label = label
        self.json = json
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        guard json else {
            var line = "\(Self.timestamp()) \(event.level.rawValue) \(label): \(event.message)"
            for key in merged.keys.sorted() { line += " \(key)=\(merged[key]!)" }
            ServerLogging.emit(line + "\n")
            return
        }
        var line = "{\"timestamp\":"
        Self.appendString(Self.timestamp(), to: &line)
        line += ",\"level\":"
        Self.appendString(event.level.rawValue, to: &line)
        line += ",\"logger\":"
        Self.appendString(label, to: &line)
        line += ",\"message\":"
        Self.appendString(event.message.description, to: &line)
        if !merged.isEmpty {
            line += ",\"metadata\":{"
            for (index, key) in merged.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                Self.appendString(key, to: &line)
                line += ":"
                Self.appendString(merged[key]!.description, to: &line)
            }
            line += "}"
        }
        line += ",\"source\":"
        Self.appendString(event.source, to: &line)
        line += "}\n"
        ServerLogging.emit(line)
    }

    /// Writes `line` with one `write(2)`, so that lines of different threads do not interleave.
    static func write(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let micros = now.tv_nsec / 1000
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(micros))
    }

    /// Appends `text` as a JSON string.
    static func appendString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
