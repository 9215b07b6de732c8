import Foundation
import NIOCore
import Testing
@testable import TailgateCore

@Suite("JSON writing")
struct JSONWritingTests {
    static let strings: [(String, String)] = [
        ("", #""""#),
        ("plain text", #""plain text""#),
        ("say \"hi\"", #""say \"hi\"""#),
        ("back\\slash", #""back\\slash""#),
        ("\\\"", #""\\\"""#),
        ("line\nfeed", #""line\nfeed""#),
        ("cr\rlf\n", #""cr\rlf\n""#),
        ("tab\there", #""tab\there""#),
        ("\u{08}\u{0C}", #""\u0008\u000c""#),
        ("nul\u{00}byte", #""nul\u0000byte""#),
        ("\u{01}\u{1F}", #""\u0001\u001f""#),
        ("\u{1B}[31mred\u{1B}[0m", #""\u001b[31mred\u001b[0m""#),
        ("del\u{7F}", "\"del\u{7F}\""),
        ("a/b", #""a/b""#),
        ("héllo 世界 🚀", "\"héllo 世界 🚀\""),
        ("\u{2028}\u{2029}", "\"\u{2028}\u{2029}\""),
        ("\u{FEFF}bom", "\"\u{FEFF}bom\""),
        ("é\n\"", #""é\n\"""#),
    ]

    @Test("escapes quotes, backslashes and control characters; passes other text through", arguments: strings)
    func escapes(_ input: String, _ expected: String) throws {
        var buffer = ByteBuffer()
        buffer.writeJSONString(input)
        #expect(String(buffer: buffer) == expected)
        #expect(try parseJSON(buffer) == .string(input))
        // swift-corelibs-foundation drops U+FEFF from the strings it reads, so it cannot judge that one.
        if !input.unicodeScalars.contains("\u{FEFF}") {
            #expect(try foundationJSON(buffer) as? String == input)
        }
    }

    @Test func everyASCIICharacterRoundTrips() throws {
        let all = String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self)
        var buffer = ByteBuffer()
        buffer.writeJSONString(all)
        let text = String(buffer: buffer)
        // No raw control character survives.
        #expect(!text.utf8.contains { $0 < 0x20 })
        #expect(try parseJSON(buffer) == .string(all))
        #expect(try foundationJSON(buffer) as? String == all)
    }

    @Test func longStringsWithEscapesScatteredThrough() throws {
        var input = ""
        for i in 0..<5000 {
            input += i % 7 == 0 ? "\u{1B}\"\\\n" : "abcdé世"
        }
        var buffer = ByteBuffer()
        buffer.writeJSONString(input)
        #expect(try parseJSON(buffer) == .string(input))
        #expect(try foundationJSON(buffer) as? String == input)
    }

    @Test func writesIntoAnObject() throws {
        var buffer = ByteBuffer()
        buffer.writeString("{")
        buffer.writeJSONString("k\u{1B}")
        buffer.writeString(":")
        buffer.writeJSONString("v\"")
        buffer.writeString(",\"n\":")
        buffer.writeJSONInteger(-42)
        buffer.writeString(",\"t\":")
        buffer.writeJSONTimestamp(Timestamp(microseconds: 1_709_210_096_789_012))
        buffer.writeString("}")
        #expect(String(buffer: buffer) == #"{"k\u001b":"v\"","n":-42,"t":"2024-02-29T12:34:56.789012Z"}"#)
        let object = try #require(try foundationJSON(buffer) as? [String: Any])
        #expect(object["k\u{1B}"] as? String == "v\"")
        #expect((object["n"] as? NSNumber)?.intValue == -42)
        #expect(object["t"] as? String == "2024-02-29T12:34:56.789012Z")
    }

    @Test func integers() {
        func text(_ write: (inout ByteBuffer) -> Void) -> String {
            var buffer = ByteBuffer()
            write(&buffer)
            return String(buffer: buffer)
        }
        #expect(text { $0.writeJSONInteger(0) } == "0")
        #expect(text { $0.writeJSONInteger(7) } == "7")
        #expect(text { $0.writeJSONInteger(-1) } == "-1")
        #expect(text { $0.writeJSONInteger(1_234_567_890) } == "1234567890")
        #expect(text { $0.writeJSONInteger(Int.max) } == "9223372036854775807")
        #expect(text { $0.writeJSONInteger(Int.min) } == "-9223372036854775808")
        #expect(text { $0.writeJSONInteger(UInt64.max) } == "18446744073709551615")
        #expect(text { $0.writeJSONInteger(Int8.min) } == "-128")
        #expect(text { $0.writeJSONInteger(UInt8(200)) } == "200")
    }
}
