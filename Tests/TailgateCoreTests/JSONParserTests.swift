import Foundation
import Testing
@testable import TailgateCore

@Suite("JSONParser")
struct JSONParserTests {
    static let documents: [(String, JSONValue)] = [
        ("null", .null),
        ("true", .bool(true)),
        ("false", .bool(false)),
        ("0", .number(0)),
        ("-0", .number(-0.0)),
        ("42", .number(42)),
        ("-12.5e3", .number(-12_500)),
        ("1E2", .number(100)),
        ("1e-2", .number(0.01)),
        ("1.25E+2", .number(125)),
        ("0.5", .number(0.5)),
        (#""""#, .string("")),
        (#""caf\u00e9""#, .string("café")),
        (#""\u00E9\u001B""#, .string("é\u{1B}")),
        (#""\ud83d\ude80 go""#, .string("🚀 go")),
        (#""\u0000""#, .string("\u{0}")),
        (#""\/\b\f\n\r\t\"\\""#, .string("/\u{08}\u{0C}\n\r\t\"\\")),
        ("\"世界 🚀\"", .string("世界 🚀")),
        ("[]", .array([])),
        ("{}", .object([:])),
        (" \t\r\n[1, 2 ,\n3] \n", .array([.number(1), .number(2), .number(3)])),
        (#"{"a":{"b":[null,true,"x"]},"c":-1}"#,
         .object(["a": .object(["b": .array([.null, .bool(true), .string("x")])]), "c": .number(-1)])),
        (#"{ "k" : "v" , "k2":[ ] }"#, .object(["k": .string("v"), "k2": .array([])])),
        (#"{"dup":1,"dup":2}"#, .object(["dup": .number(2)])),
    ]

    @Test("parses valid documents", arguments: documents)
    func parsesValid(_ text: String, _ expected: JSONValue) throws {
        #expect(try JSONParser.parse(text) == expected)
        #expect(try parseJSON(bytes: Array(text.utf8)) == expected)
    }

    static let malformed: [(String, String)] = [
        ("", "unexpected end of JSON"),
        ("   ", "unexpected end of JSON"),
        ("1 2", "unexpected data after the JSON value"),
        ("{} x", "unexpected data after the JSON value"),
        ("[]]", "unexpected data after the JSON value"),
        ("nullnull", "unexpected data after the JSON value"),
        ("[1,]", "unexpected character"),
        ("[,1]", "unexpected character"),
        (#"{"a":1,}"#, "expected a string key"),
        ("{a:1}", "expected a string key"),
        (#"{"a" 1}"#, "expected ':'"),
        ("[1 2]", "expected ',' or ']'"),
        (#"{"a":1 "b":2}"#, "expected ',' or '}'"),
        ("[", "unexpected end of JSON"),
        (#"{"a":"#, "unexpected end of JSON"),
        (#"{"a":1"#, "unexpected end of JSON"),
        (#""\x""#, "invalid escape"),
        (#""\U0041""#, "invalid escape"),
        (#""\'""#, "invalid escape"),
        (#""\u12G4""#, "invalid \\u escape"),
        (#""\u12zz""#, "invalid \\u escape"),
        (#""\u12""#, "unexpected end of JSON"),
        (#""\ud800""#, "unpaired surrogate"),
        (#""\ud800x""#, "unpaired surrogate"),
        (#""\ud800\u0041""#, "unpaired surrogate"),
        (#""\ud800\ud800""#, "unpaired surrogate"),
        (#""\udc00""#, "unpaired surrogate"),
        (#""\ude80\ud83d""#, "unpaired surrogate"),
        ("\"a\nb\"", "control character in string"),
        ("\"tab\there\"", "control character in string"),
        ("\"\u{1F}\"", "control character in string"),
        ("\"\u{1B}[0m\"", "control character in string"),
        ("\"esc \\n then \u{01}\"", "control character in string"),
        ("01", "invalid number (leading zero)"),
        ("-01", "invalid number (leading zero)"),
        ("00", "invalid number (leading zero)"),
        ("[007]", "invalid number (leading zero)"),
        ("1.", "invalid number"),
        ("1.e5", "invalid number"),
        ("-", "invalid number"),
        ("-a", "invalid number"),
        ("1e", "invalid number"),
        ("1e+", "invalid number"),
        (".5", "unexpected character"),
        ("+1", "unexpected character"),
        ("NaN", "unexpected character"),
        ("'a'", "unexpected character"),
        ("tru", "unexpected end of JSON"),
        ("trux", "invalid literal"),
        ("nul", "unexpected end of JSON"),
        ("nulL", "invalid literal"),
        ("False", "unexpected character"),
        ("\"abc", "unterminated string"),
        ("\"ab\\n", "unterminated string"),
        ("\"ab\\", "unexpected end of JSON"),
    ]

    @Test("refuses malformed documents with a reason", arguments: malformed)
    func refusesMalformed(_ text: String, _ message: String) {
        let error = #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
        #expect(error?.message == message, "\(text.debugDescription)")
        #expect((error?.offset ?? -1) >= 0 && (error?.offset ?? .max) <= text.utf8.count)
    }

    @Test func errorOffsets() {
        #expect(throws: JSONParseError(message: "unexpected data after the JSON value", offset: 2)) { try JSONParser.parse("1 2") }
        #expect(throws: JSONParseError(message: "unexpected character", offset: 3)) { try JSONParser.parse("[1,]") }
        #expect(throws: JSONParseError(message: "control character in string", offset: 2)) { try JSONParser.parse("\"a\nb\"") }
        let error = JSONParseError(message: "invalid literal", offset: 7)
        #expect(error.description == "invalid literal at byte 7")
    }

    @Test("nesting up to 64 levels is accepted", arguments: [1, 2, 63, 64])
    func nestingWithinLimit(_ depth: Int) throws {
        #expect(JSONParser.maxDepth == 64)
        let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        _ = try JSONParser.parse(arrays)
        let objects = String(repeating: #"{"a":"#, count: depth) + "0" + String(repeating: "}", count: depth)
        _ = try JSONParser.parse(objects)
        let mixed = String(repeating: #"[{"a":"#, count: depth / 2) + "0" + String(repeating: "}]", count: depth / 2)
        _ = try JSONParser.parse(mixed)
    }

    @Test("nesting over 64 levels is refused", arguments: [65, 66, 100, 10_000])
    func nestingOverLimit(_ depth: Int) {
        let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        let objects = String(repeating: #"{"a":"#, count: depth) + "0" + String(repeating: "}", count: depth)
        let mixed = String(repeating: #"[{"a":"#, count: (depth + 1) / 2) + "0" + String(repeating: "}]", count: (depth + 1) / 2)
        for text in [arrays, objects, mixed] {
            let error = #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
            #expect(error?.message == "JSON nested too deeply")
        }
    }

    @Test func siblingsDoNotAddToDepth() throws {
        // 64 deep, twice in a row inside one array: depth is about nesting, not about count.
        let deep = String(repeating: "[", count: 63) + String(repeating: "]", count: 63)
        _ = try JSONParser.parse("[" + deep + "," + deep + "]")
    }

    static let invalidUTF8: [[UInt8]] = [
        [0x22, 0xFF, 0x22],  // never valid
        [0x22, 0x61, 0xC3, 0x22],  // truncated two-byte sequence
        [0x22, 0xC0, 0xAF, 0x22],  // overlong '/'
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // an encoded surrogate
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // beyond U+10FFFF
        [0x22, 0x80, 0x22],  // lone continuation byte
        [0x22, 0x5C, 0x6E, 0xFF, 0x22],  // after an escape (the slow path)
        [0x7B, 0x22, 0xE2, 0x82, 0x22, 0x3A, 0x31, 0x7D],  // in a key
    ]

    @Test("refuses invalid UTF-8 in strings", arguments: invalidUTF8)
    func refusesInvalidUTF8(_ bytes: [UInt8]) {
        let error = #expect(throws: JSONParseError.self) { try parseJSON(bytes: bytes) }
        #expect(error?.message == "invalid UTF-8 in string")
    }

    @Test func refusesBytesOutsideStrings() {
        #expect(throws: JSONParseError.self) { try parseJSON(bytes: [0xEF, 0xBB, 0xBF, 0x31]) }  // a BOM
        #expect(throws: JSONParseError.self) { try parseJSON(bytes: [0x5B, 0xFF, 0x5D]) }
        #expect(throws: JSONParseError.self) { try parseJSON(bytes: [0x31, 0x00]) }
    }

    @Test func acceptsValidMultibyteUTF8() throws {
        let text = "\"é 世 🚀 \u{10FFFF}\""
        #expect(try parseJSON(bytes: Array(text.utf8)) == .string("é 世 🚀 \u{10FFFF}"))
    }

    @Test func agreesWithFoundationOnAccepting() throws {
        // Every document above is valid for Foundation too, and every malformed one (bar depth) is not.
        for (text, _) in Self.documents {
            #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil, "\(text)")
        }
    }

    @Test func valueAccessors() throws {
        let value = try JSONParser.parse(#"{"s":"text","i":42,"f":2.5,"big":1e16,"neg":-3,"n":null}"#)
        #expect(value["s"]?.stringValue == "text")
        #expect(value["i"]?.intValue == 42)
        #expect(value["neg"]?.intValue == -3)
        #expect(value["f"]?.intValue == nil)
        #expect(value["big"]?.intValue == nil)
        #expect(value["i"]?.stringValue == nil)
        #expect(value["n"] == .null)
        #expect(value["missing"] == nil)
        #expect(JSONValue.array([])["s"] == nil)
    }
}
