import Foundation
import NIOCore
import Testing
@testable import TailgateCore

@Suite("RecordEncoder")
struct RecordEncoderTests {
    static let fieldOrder = ["seq", "timestamp", "level", "message", "logger_name", "module", "func_name", "line_no"]

    func encode(_ record: LogRecord, seq: UInt64 = 1, timestamp: Timestamp = Timestamp(microseconds: 0)) -> ByteBuffer {
        var buffer = ByteBuffer()
        RecordEncoder.encode(record, seq: seq, timestamp: timestamp, into: &buffer)
        return buffer
    }

    @Test func exactBytes() {
        let record = LogRecord(
            level: .warning, message: "fill \"A\"\u{1B}[0m", loggerName: "strategy.ma", module: "engine",
            funcName: "on_bar", lineNo: 42, metadata: ["symbol": "002050.SZ", "b": "2", "a": "1"])
        let buffer = encode(record, seq: 7, timestamp: Timestamp(microseconds: 1_709_210_096_789_012))
        #expect(String(buffer: buffer) == #"{"seq":7,"timestamp":"2024-02-29T12:34:56.789012Z","level":"WARNING","message":"fill \"A\"\u001b[0m","logger_name":"strategy.ma","module":"engine","func_name":"on_bar","line_no":42,"metadata":{"a":"1","b":"2","symbol":"002050.SZ"}}"#)
    }

    @Test func defaultsAreEmptyStringsAndZero() {
        let buffer = encode(LogRecord(message: "x"), seq: 18_446_744_073_709_551_615)
        #expect(String(buffer: buffer) == #"{"seq":18446744073709551615,"timestamp":"1970-01-01T00:00:00.000000Z","level":"INFO","message":"x","logger_name":"","module":"","func_name":"","line_no":0}"#)
    }

    @Test("metadata is written only when it has entries", arguments: [
        ([String: String]?.none, false),
        ([String: String]?.some([:]), false),
        ([String: String]?.some(["k": "v"]), true),
    ])
    func metadataPresence(_ metadata: [String: String]?, _ present: Bool) throws {
        let buffer = encode(LogRecord(message: "m", metadata: metadata))
        let keys = topLevelKeys(String(buffer: buffer))
        #expect(keys == Self.fieldOrder + (present ? ["metadata"] : []))
        let object = try #require(try foundationJSON(buffer) as? [String: Any])
        #expect((object["metadata"] != nil) == present)
    }

    @Test("every level is written by its wire name", arguments: LogLevel.allCases)
    func levels(_ level: LogLevel) throws {
        let value = try parseJSON(encode(LogRecord(level: level, message: "m")))
        #expect(value["level"] == .string(level.rawValue))
    }

    @Test func metadataKeysAreSortedByteWise() throws {
        var metadata: [String: String] = [:]
        for key in ["zeta", "alpha", "Beta", "_u", "10", "9", "é", "a b", "a\"q"] { metadata[key] = "v-\(key)" }
        let buffer = encode(LogRecord(message: "m", metadata: metadata))
        let text = String(buffer: buffer)
        let metadataText = String(text[text.range(of: #""metadata":"#)!.upperBound...].dropLast())
        #expect(topLevelKeys(metadataText) == metadata.keys.sorted())
        #expect(metadata.keys.sorted() == ["10", "9", "Beta", "_u", "a b", "a\"q", "alpha", "zeta", "é"])
        let value = try parseJSON(buffer)
        #expect(value["metadata"] == .object(metadata.mapValues { .string($0) }))
    }

    @Test func everyFieldSurvivesAParse() throws {
        let record = LogRecord(
            level: .critical, message: "line1\nline2\t\"quoted\" \\ 世界 \u{1B}[1m", loggerName: "log\"ger",
            module: "mod\\ule", funcName: "f(x:)", lineNo: -5, metadata: ["k\n": "v\u{0}"])
        let buffer = encode(record, seq: 99, timestamp: Timestamp(microseconds: -1))
        let value = try parseJSON(buffer)
        #expect(value["seq"]?.intValue == 99)
        #expect(value["timestamp"] == .string("1969-12-31T23:59:59.999999Z"))
        #expect(value["level"] == .string("CRITICAL"))
        #expect(value["message"] == .string(record.message))
        #expect(value["logger_name"] == .string(record.loggerName))
        #expect(value["module"] == .string(record.module))
        #expect(value["func_name"] == .string(record.funcName))
        #expect(value["line_no"]?.intValue == -5)
        #expect(value["metadata"] == .object(["k\n": .string("v\u{0}")]))
        let object = try #require(try foundationJSON(buffer) as? [String: Any])
        #expect(object["message"] as? String == record.message)
        #expect((object["metadata"] as? [String: String]) == ["k\n": "v\u{0}"])
    }

    @Test func appendsWithoutTouchingWhatIsAlreadyThere() {
        var buffer = ByteBuffer()
        buffer.writeString("prefix|")
        RecordEncoder.encode(LogRecord(message: "m"), seq: 1, timestamp: Timestamp(microseconds: 0), into: &buffer)
        #expect(String(buffer: buffer).hasPrefix("prefix|{\"seq\":1,"))
    }
}
