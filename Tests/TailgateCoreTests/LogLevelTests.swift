import Testing
@testable import TailgateCore

@Suite("LogLevel")
struct LogLevelTests {
    static let names: [(String, LogLevel)] = [
        ("TRACE", .trace), ("trace", .trace), ("Trace", .trace),
        ("DEBUG", .debug), ("debug", .debug), ("dEbUg", .debug),
        ("INFO", .info), ("info", .info), ("Info", .info),
        ("NOTICE", .notice), ("notice", .notice),
        ("WARNING", .warning), ("warning", .warning), ("WARN", .warning), ("warn", .warning), ("Warn", .warning),
        ("ERROR", .error), ("error", .error), ("ERR", .error), ("err", .error),
        ("CRITICAL", .critical), ("critical", .critical), ("CRIT", .critical), ("crit", .critical),
        ("FATAL", .critical), ("fatal", .critical), ("Fatal", .critical),
    ]

    @Test("reads names and aliases case-insensitively", arguments: names)
    func readsNames(_ name: String, _ level: LogLevel) {
        #expect(LogLevel(name: name) == level)
        #expect(LogLevel(name: Substring(name)) == level)
    }

    @Test("refuses other names", arguments: [
        "", "I", "inf", "information", "WARNINGS", " INFO", "INFO ", "IN FO", "verbose", "5", "panic",
        "errors", "critic", "fatality", "warning\n", "DEBUG1", "success", "ERR\0", "INFO\0", "\0INFO", "ınfo",
        "CRITICALS", "WARNİNG",
    ])
    func refusesOthers(_ name: String) {
        #expect(LogLevel(name: name) == nil)
    }

    @Test func wireNames() {
        #expect(LogLevel.allCases.map(\.rawValue) == ["TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"])
        for level in LogLevel.allCases {
            #expect(LogLevel(name: level.rawValue) == level)
            #expect(LogLevel(rawValue: level.rawValue) == level)
        }
    }

    @Test func orderingFollowsSeverity() {
        let ordered: [LogLevel] = [.trace, .debug, .info, .notice, .warning, .error, .critical]
        for (i, lower) in ordered.enumerated() {
            for (j, higher) in ordered.enumerated() {
                #expect((lower < higher) == (i < j), "\(lower) < \(higher)")
            }
        }
        #expect([LogLevel.error, .trace, .critical, .info, .warning, .notice, .debug].sorted() == ordered)
        #expect(LogLevel.allCases.max() == .critical)
        #expect(LogLevel.allCases.min() == .trace)
    }
}
