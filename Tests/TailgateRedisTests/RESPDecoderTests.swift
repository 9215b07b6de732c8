import NIOCore
import NIOEmbedded
import Testing
@testable import TailgateRedis

/// The decoder alone, in an `EmbeddedChannel`: every type, replies split anywhere, limits, bad bytes.
@Suite struct RESPDecoderTests {
    private func decodeAll(_ text: String, limits: RESPDecoder.Limits = RESPDecoder.Limits(), chunk: Int = .max) throws -> [RESPValue] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder(limits: limits)))
        defer { _ = try? channel.finish() }
        let bytes = Array(text.utf8)
        var start = 0
        var values: [RESPValue] = []
        while start < bytes.count {
            let end = min(bytes.count, start + chunk)
            try channel.writeInbound(ByteBuffer(bytes: bytes[start..<end]))
            while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
            start = end
        }
        return values
    }

    static let samples: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
         .error("WRONGTYPE Operation against a key holding the wrong kind of value")),
        (":1000\r\n", .integer(1000)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$5\r\nhe\r\no\r\n", .bulk("he\r\no")),
        ("$0\r\n\r\n", .bulk("")),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("*0\r\n", .array([])),
        ("*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n", .array([.integer(1), .bulk("a"), .array([.simpleString("x")])])),
        ("_\r\n", .null),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        (",3.25\r\n", .double(3.25)),
        (",inf\r\n", .double(.infinity)),
        ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
        ("!21\r\nSYNTAX invalid syntax\r\n", .error("SYNTAX invalid syntax")),
        ("=15\r\ntxt:Some string\r\n", .verbatimString(format: "txt", text: ByteBuffer(string: "Some string"))),
        ("%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", .map([RESPPair(key: .simpleString("a"), value: .integer(1)),
                                              RESPPair(key: .simpleString("b"), value: .integer(2))])),
        ("~2\r\n+a\r\n+b\r\n", .set([.simpleString("a"), .simpleString("b")])),
        (">2\r\n+message\r\n+hi\r\n", .push([.simpleString("message"), .simpleString("hi")])),
        ("|1\r\n+ttl\r\n:3600\r\n:7\r\n", .integer(7)),
    ]

    @Test("every reply type decodes, whole and split at every byte", arguments: 0..<samples.count)
    func everyType(index: Int) throws {
        let (text, expected) = Self.samples[index]
        #expect(try decodeAll(text) == [expected])
        #expect(try decodeAll(text, chunk: 1) == [expected])
    }

    @Test func manyRepliesInOneRead() throws {
        let text = Self.samples.map(\.0).joined()
        #expect(try decodeAll(text) == Self.samples.map(\.1))
        #expect(try decodeAll(text, chunk: 7) == Self.samples.map(\.1))
    }

    static let malformed: [(String, String)] = [
        ("?what\r\n", "unknown type"),
        (":12a\r\n", "not a decimal"),
        (":\r\n", "empty"),
        (":99999999999999999999\r\n", "out of range"),
        ("$-2\r\n", "negative length"),
        ("*-5\r\n", "negative length"),
        ("$3\r\nabcXY", "not followed by CRLF"),
        ("+OK\rX", "CR without LF"),
        ("#x\r\n", "boolean"),
        (",fast\r\n", "double"),
        ("(12x\r\n", "big number"),
        ("_x\r\n", "null with content"),
        ("=3\r\nabc\r\n", "verbatim"),
        ("$9999999999\r\n", "limit"),
        ("*99999999999\r\n", "limit"),
        ("%9999999999\r\n", "limit"),
        ("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "nested"),
    ]

    @Test("malformed input is refused with a clear error", arguments: 0..<malformed.count)
    func malformedInput(index: Int) throws {
        let (text, words) = Self.malformed[index]
        var limits = RESPDecoder.Limits()
        limits.maxDepth = 4
        var buffer = ByteBuffer(string: text)
        #expect {
            _ = try RESPDecoder(limits: limits).next(from: &buffer)
        } throws: { error in
            guard case RedisError.protocolViolation(let why) = error else { return false }
            return why.contains(words)
        }
    }

    @Test func aLineWithoutEndIsRefusedAtTheLimit() throws {
        var limits = RESPDecoder.Limits()
        limits.maxLineLength = 64
        var buffer = ByteBuffer(string: "+" + String(repeating: "a", count: 40))
        #expect(try RESPDecoder(limits: limits).next(from: &buffer) == nil)
        buffer.writeString(String(repeating: "a", count: 40))
        #expect(throws: RedisError.self) { try RESPDecoder(limits: limits).next(from: &buffer) }
    }

    @Test func aHugeDeclaredArrayAllocatesNothingUpFront() throws {
        // 16M elements declared, 3 sent: waits for more without reserving 16M slots.
        var buffer = ByteBuffer(string: "*16777216\r\n:1\r\n:2\r\n:3\r\n")
        #expect(try RESPDecoder().next(from: &buffer) == nil)
        #expect(buffer.readerIndex == 0)
    }

    @Test func anErrorInTheChannelClosesNothingButIsReported() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        #expect(throws: RedisError.self) { try channel.writeInbound(ByteBuffer(string: "+OK\r\n?bad\r\n")) }
        #expect(try channel.readInbound(as: RESPValue.self) == .simpleString("OK"))
        _ = try? channel.finish()
    }

    /// Random bytes, and valid replies with bytes flipped, cut or repeated: each either decodes, waits
    /// for more, or is refused with `RedisError` — never a crash, never a hang.
    @Test func fuzzedInputNeverCrashes() throws {
        var generator = SplitMix64(seed: 18)
        let valid = Self.samples.map { Array($0.0.utf8) }
        let alphabet = Array("+-:$*_#,(!=%~>|\r\n0123456789-abc".utf8)
        var outcomes = (values: 0, incomplete: 0, refused: 0)
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 40)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            } else {
                bytes = valid[Int(generator.next() % UInt64(valid.count))] + valid[Int(generator.next() % UInt64(valid.count))]
                for _ in 0..<(1 + generator.next() % 3) where !bytes.isEmpty {
                    let index = Int(generator.next() % UInt64(bytes.count))
                    switch generator.next() % 3 {
                    case 0: bytes[index] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                    case 1: bytes.remove(at: index)
                    default: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: index)
                    }
                }
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let _ = try RESPDecoder().next(from: &buffer) { outcomes.values += 1 }
                outcomes.incomplete += 1
            } catch {
                outcomes.refused += 1
            }
        }
        #expect(outcomes.values > 0 && outcomes.incomplete > 0 && outcomes.refused > 0)
    }
}

/// A small deterministic random generator, so a failing fuzz round can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
