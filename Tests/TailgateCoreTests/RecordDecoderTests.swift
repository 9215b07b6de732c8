import Testing
@testable import TailgateCore

@Suite("RecordDecoder")
struct RecordDecoderTests {
    static func decode(_ line: String) throws(RecordDecoder.Rejection) -> LogRecord {
        try decode(bytes: Array(line.utf8))
    }

    static func decode(bytes: [UInt8]) throws(RecordDecoder.Rejection) -> LogRecord {
        let result = bytes.withUnsafeBufferPointer { buffer in
            Result { () throws(RecordDecoder.Rejection) in try RecordDecoder.decodeJSONLine(buffer) }
        }
        return try result.get()
    }

    static func rejection(_ line: String) -> String? {
        rejection(bytes: Array(line.utf8))
    }

    static func rejection(bytes: [UInt8]) -> String? {
        do {
            _ = try decode(bytes: bytes)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func readsEveryField() throws {
        let record = try Self.decode(#"{"timestamp":"2026-11-27T13:16:40.123456Z","level":"warning","message":"slippage 0.03 é","logger_name":"TurtleBreakout","module":"strategies.turtlebreakout","func_name":"on_trade","line_no":277,"metadata":{"order":"A-10492"},"seq":99,"extra":[1,{"x":null}]}"#)
        #expect(record.level == .warning)
        #expect(record.message == "slippage 0.03 é")
        #expect(record.loggerName == "TurtleBreakout")
        #expect(record.module == "strategies.turtlebreakout")
        #expect(record.funcName == "on_trade")
        #expect(record.lineNo == 277)
        #expect(record.metadata == ["order": "A-10492"])
        #expect(record.timestamp == Timestamp(iso8601: "2026-11-27T13:16:40.123456Z"))
    }

    @Test func defaultsAndNulls() throws {
        let record = try Self.decode(#" { "message" : "m" , "logger_name":null,"module":null,"func_name":null,"line_no":null,"metadata":null,"timestamp":null } "#)
        #expect(record == LogRecord(message: "m"))
        #expect(try Self.decode(#"{"message":""}"#).message == "")
    }

    @Test func keysAndValuesWithEscapesTakeTheSlowPathToTheSameResult() throws {
        let record = try Self.decode(#"{"mess\u0061ge":"a\"b\n","lev\u0065l":"\u0045RROR","time\u0073tamp":"2026-11-27T13:16:40Z","line\u005fno":7}"#)
        #expect(record.message == "a\"b\n")
        #expect(record.level == .error)
        #expect(record.lineNo == 7)
        #expect(record.timestamp == Timestamp(iso8601: "2026-11-27T13:16:40Z"))
    }

    @Test("reads line_no written in any JSON number form that is whole", arguments: [
        ("0", 0), ("-12", -12), ("431", 431), ("1e2", 100), ("5.0", 5), ("-0", 0), ("999999999999999", 999_999_999_999_999),
    ])
    func wholeNumbers(_ text: String, _ expected: Int) throws {
        #expect(try Self.decode(#"{"message":"m","line_no":\#(text)}"#).lineNo == expected)
    }

    @Test("rejects each bad field with its reason", arguments: [
        (#"{"level":"INFO"}"#, "missing 'message'"),
        (#"{"message":null}"#, "'message' must be a string"),
        (#"{"message":3}"#, "'message' must be a string"),
        (#"{"message":"m","level":"verbose"}"#, "unknown level 'verbose' (expected TRACE, DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL)"),
        (#"{"message":"m","level":"ERR\u0000"}"#, "unknown level 'ERR\u{0}' (expected TRACE, DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL)"),
        (#"{"message":"m","level":null}"#, "'level' must be a string"),
        (#"{"message":"m","timestamp":"yesterday"}"#, "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"),
        (#"{"message":"m","timestamp":12}"#, "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"),
        (#"{"message":"m","line_no":1.5}"#, "'line_no' must be a whole number"),
        (#"{"message":"m","line_no":"7"}"#, "'line_no' must be a whole number"),
        (#"{"message":"m","line_no":123456789012345678}"#, "'line_no' must be a whole number"),  // not exact as a JSON number
        (#"{"message":"m","line_no":9223372036854775808}"#, "'line_no' must be a whole number"),  // beyond Int64
        (#"{"message":"m","line_no":1e300}"#, "'line_no' must be a whole number"),
        (#"{"message":"m","line_no":4.9e-324}"#, "'line_no' must be a whole number"),  // denormal
        (#"{"message":"m","timestamp":"2026-11-30T04:00:00+99:00"}"#, "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"),
        (#"{"message":"m","timestamp":"2026-11-30T04:00:00+24:00"}"#, "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"),
        (#"{"message":"m","timestamp":"2026-11-30T04:00:00-05:60"}"#, "'timestamp' must be an ISO-8601 string such as 2026-11-27T13:16:40.123456Z"),
        (#"{"message":"m","module":7}"#, "'module' must be a string"),
        (#"{"message":"m","metadata":[]}"#, "'metadata' must be an object of strings"),
        (#"{"message":"m","metadata":{"k":1}}"#, "metadata 'k' must be a string"),
        (#"["message"]"#, "a line must be a JSON object"),
        (#"{"message":"m"} x"#, "invalid JSON: unexpected data after the JSON value at byte 16"),
        (#"{"message":"m","line_no":01}"#, "invalid JSON: invalid number (leading zero) at byte 27"),
        (#"{"message":"m""#, "invalid JSON: unexpected end of JSON at byte 14"),
        ("{\"message\":\"m\t\"}", "invalid JSON: control character in string at byte 13"),
    ])
    func rejections(_ line: String, _ reason: String) {
        #expect(Self.rejection(line) == reason)
    }

    @Test("rejects invalid UTF-8 wherever it is", arguments: [
        "message", "level", "timestamp", "logger_name", "key",
    ])
    func invalidUTF8(_ place: String) {
        let bad: [UInt8] = [0x61, 0xC3, 0x28]
        var line: [UInt8]
        if place == "key" {
            line = Array(#"{"message":"m",""#.utf8) + bad + Array(#"":"v"}"#.utf8)
        } else {
            line = Array(#"{"message":"m","\#(place)":""#.utf8) + bad + Array(#""}"#.utf8)
            if place == "message" { line = Array(#"{"message":""#.utf8) + bad + Array(#""}"#.utf8) }
        }
        let reason = Self.rejection(bytes: line)
        #expect(reason?.hasPrefix("invalid JSON: invalid UTF-8 in string") == true, "\(place): \(reason ?? "accepted")")
    }

    @Test func repeatedStringsAreReusedOnlyWhenEqual() throws {
        var strings = RecordDecoder.RepeatedValues()
        let lines = [
            #"{"message":"1","logger_name":"Turtle","module":"strategies.turtlebreakout","func_name":"on_bar"}"#,
            #"{"message":"2","logger_name":"Turtle","module":"strategies.turtlebreakout","func_name":"on_bar"}"#,
            #"{"message":"3","logger_name":"Turtlf","module":"strategies.turtlebreakouT","func_name":"on_ba"}"#,
            #"{"message":"4","logger_name":null,"module":"strat\u0065gies","func_name":""}"#,
            #"{"message":"5","logger_name":"Turtle","module":"strategies","func_name":"on_bar"}"#,
            #"{"message":"6"}"#,
        ]
        var records: [LogRecord] = []
        for line in lines {
            var bytes = Array(line.utf8)
            let result = bytes.withUnsafeMutableBufferPointer { buffer in
                Result { () throws(RecordDecoder.Rejection) in try RecordDecoder.decodeJSONLine(UnsafeBufferPointer(buffer), reusing: &strings) }
            }
            records.append(try result.get())
        }
        #expect(records.map(\.loggerName) == ["Turtle", "Turtle", "Turtlf", "", "Turtle", ""])
        #expect(records.map(\.module) == ["strategies.turtlebreakout", "strategies.turtlebreakout", "strategies.turtlebreakouT",
                                           "strategies", "strategies", ""])
        #expect(records.map(\.funcName) == ["on_bar", "on_bar", "on_ba", "", "on_bar", ""])
        let bad: [UInt8] = Array(#"{"message":"m","module":""#.utf8) + [0xFF] + Array(#""}"#.utf8)
        let reason = bad.withUnsafeBufferPointer { buffer -> String? in
            do throws(RecordDecoder.Rejection) { _ = try RecordDecoder.decodeJSONLine(buffer, reusing: &strings); return nil } catch { return error.message }
        }
        #expect(reason?.hasPrefix("invalid JSON: invalid UTF-8 in string") == true)
    }
}
