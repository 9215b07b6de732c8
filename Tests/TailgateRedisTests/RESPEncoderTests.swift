import NIOCore
import Testing
@testable import TailgateRedis

@Suite struct RESPEncoderTests {
    @Test func commandsAreArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RESPEncoder.write(RedisCommand("SET", ["key", .bytes(ByteBuffer(string: "v\r\n")), .integer(-12), .unsigned(0)]), into: &buffer)
        #expect(String(buffer: buffer) == "*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\nv\r\n\r\n$3\r\n-12\r\n$1\r\n0\r\n")
    }

    @Test(arguments: [Int64.min, -1, 0, 9, 10, 99, 100, 1_234_567_890, .max])
    func integersAndTheSizeEstimate(value: Int64) {
        let command = RedisCommand("INCRBY", ["k", .integer(value), .unsigned(UInt64(value.magnitude))])
        var buffer = ByteBuffer()
        RESPEncoder.write(command, into: &buffer)
        #expect(buffer.readableBytes == RESPEncoder.encodedSize(command))
        #expect(String(buffer: buffer).contains("\r\n\(value)\r\n"))
        #expect(String(buffer: buffer).hasSuffix("\r\n\(value.magnitude)\r\n"))
    }

    @Test func encodedCommandsDecodeBackAsArrays() throws {
        var buffer = ByteBuffer()
        RESPEncoder.write(RedisCommand("XADD", "s", "*", "f", "ü"), into: &buffer)
        let value = try RESPDecoder().next(from: &buffer)
        #expect(value == .array([.bulk("XADD"), .bulk("s"), .bulk("*"), .bulk("f"), .bulk("ü")]))
    }
}
