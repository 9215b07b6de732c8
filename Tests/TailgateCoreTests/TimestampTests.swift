import Foundation
import NIOCore
import Testing
@testable import TailgateCore

@Suite("Timestamp")
struct TimestampTests {
    static let known: [(Int64, String)] = [
        (0, "1970-01-01T00:00:00.000000Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (999_999, "1970-01-01T00:00:00.999999Z"),
        (86_400_000_000, "1970-01-02T00:00:00.000000Z"),
        (1_709_210_096_789_012, "2024-02-29T12:34:56.789012Z"),  // leap day
        (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),  // leap day of a year divisible by 400
        (4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z"),  // 2100 is not a leap year
        (2_147_483_647_000_000, "2038-01-19T03:14:07.000000Z"),
        (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (-1_000_000, "1969-12-31T23:59:59.000000Z"),
        (-500_000, "1969-12-31T23:59:59.500000Z"),
        (-86_400_000_000, "1969-12-31T00:00:00.000000Z"),
        (-14_182_940_000_000, "1969-07-20T20:17:40.000000Z"),
        (-2_208_988_800_000_000, "1900-01-01T00:00:00.000000Z"),
        (-11_670_976_371_999_991, "1600-02-29T06:07:08.000009Z"),
        (-62_135_596_800_000_000, "0001-01-01T00:00:00.000000Z"),
    ]

    @Test("formats ISO-8601 with microseconds and Z", arguments: known)
    func formats(_ microseconds: Int64, _ text: String) {
        let timestamp = Timestamp(microseconds: microseconds)
        #expect(timestamp.description == text)
        #expect(timestamp.description.utf8.count == 27)
        var buffer = ByteBuffer()
        timestamp.write(to: &buffer)
        #expect(String(buffer: buffer) == text)
        var quoted = ByteBuffer()
        quoted.writeJSONTimestamp(timestamp)
        #expect(String(buffer: quoted) == "\"\(text)\"")
    }

    @Test("parses what it formats", arguments: known)
    func parsesKnown(_ microseconds: Int64, _ text: String) throws {
        let parsed = try #require(Timestamp(iso8601: text))
        #expect(parsed.microseconds == microseconds)
    }

    static let parsable: [(String, Int64)] = [
        ("2024-02-29T12:34:56Z", 1_709_210_096_000_000),
        ("2024-02-29T12:34:56z", 1_709_210_096_000_000),
        ("2024-02-29 12:34:56Z", 1_709_210_096_000_000),
        ("2024-02-29T12:34:56", 1_709_210_096_000_000),  // no zone: UTC
        ("2024-02-29T12:34:56.7Z", 1_709_210_096_700_000),
        ("2024-02-29T12:34:56.78Z", 1_709_210_096_780_000),
        ("2024-02-29T12:34:56.789Z", 1_709_210_096_789_000),
        ("2024-02-29T12:34:56.7890Z", 1_709_210_096_789_000),
        ("2024-02-29T12:34:56.78901Z", 1_709_210_096_789_010),
        ("2024-02-29T12:34:56.789012Z", 1_709_210_096_789_012),
        ("2024-02-29T12:34:56.7890129Z", 1_709_210_096_789_012),  // beyond microseconds: truncated
        ("2024-02-29T12:34:56.123456789Z", 1_709_210_096_123_456),
        ("2024-02-29T12:34:56.000001Z", 1_709_210_096_000_001),
        ("2024-02-29T12:34:56+00:00", 1_709_210_096_000_000),
        ("2024-02-29T12:34:56-00:00", 1_709_210_096_000_000),
        ("2024-02-29T18:04:56+05:30", 1_709_210_096_000_000),
        ("2024-02-29T18:04:56+0530", 1_709_210_096_000_000),
        ("2024-02-29T07:34:56-05:00", 1_709_210_096_000_000),
        ("2024-03-01T01:34:56+13:00", 1_709_210_096_000_000),  // the offset crosses midnight
        ("2024-02-28T23:34:56-13:00", 1_709_210_096_000_000),
        ("2024-02-29T18:04:56.789012+05:30", 1_709_210_096_789_012),
        ("2024-02-29T12:34:56.5-00:00", 1_709_210_096_500_000),
        ("1969-12-31T23:59:59.5Z", -500_000),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T19:00:00-05:00", 0),
    ]

    @Test("parses zones, offsets and fractions of any length", arguments: parsable)
    func parses(_ text: String, _ microseconds: Int64) throws {
        let parsed = try #require(Timestamp(iso8601: text))
        #expect(parsed.microseconds == microseconds)
        #expect(Timestamp(iso8601: Substring(text))?.microseconds == microseconds)
    }

    @Test("refuses what is not ISO-8601", arguments: [
        "", "2024", "2024-02-29", "2024-02-29T", "2024-02-29T12:34", "2024-02-29T12:34Z", "2024-02-29T12:34:5Z",
        "2024-02-29T12:34:56.", "2024-02-29T12:34:56.Z", "2024-02-29T12:34:56.12a456Z",
        "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-02-00T00:00:00Z", "2024-02-32T00:00:00Z",
        "2024-02-29T24:00:00Z", "2024-02-29T12:60:00Z", "2024-02-29T12:34:61Z",
        "2024-02-29T12:34:56ZZ", "2024-02-29T12:34:56Z ", " 2024-02-29T12:34:56Z", "2024-02-29T12:34:56 Z",
        "2024-02-29T12:34:56+05", "2024-02-29T12:34:56+5:30", "2024-02-29T12:34:56+05:3", "2024-02-29T12:34:56+05:30:00",
        "2024-02-29T12:34:56UTC", "2024-02-29T12:34:56GMT", "2024-02-29T12:34:56+",
        "2024/02/29T12:34:56Z", "2024-02-29X12:34:56Z", "2024-02-29t12:34:56Z", "24-02-29T12:34:56Z",
        "+2024-02-29T12:34:56Z", "-2024-02-29T12:34:56Z", "abcd-ef-ghTij:kl:mnZ", "2024-2-29T12:34:56Z",
        "１９７０-01-01T00:00:00Z", "1709210096", "2024-02-29T12:34:56.789012Zjunk",
    ])
    func refuses(_ text: String) {
        #expect(Timestamp(iso8601: text) == nil)
    }

    @Test("refuses dates that do not exist in the calendar",
          arguments: ["2023-02-29T00:00:00Z", "2024-02-30T00:00:00Z", "2024-04-31T00:00:00Z", "2100-02-29T00:00:00Z"])
    func refusesImpossibleDates(_ text: String) {
        #expect(Timestamp(iso8601: text) == nil)
    }

    @Test("an accepted timestamp can always be written back", arguments: [
        "0000-01-01T00:00:00Z", "0000-01-01T00:00:00-01:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+01:00",
    ])
    func acceptedTimestampsAreWritable(_ text: String) {
        expectWritable(text)
    }

    @Test("an offset that leaves years 0000...9999 is refused or written correctly",
          arguments: ["0000-01-01T00:00:00+01:00", "0000-01-01T00:30:00+00:45", "9999-12-31T23:59:59-01:00", "9999-12-31T23:30:00-00:45"])
    func outOfRangeOffsets(_ text: String) {
        expectWritable(text)
    }

    private func expectWritable(_ text: String) {
        // Either refused, or written as 27 characters of ISO-8601 that read back as the same moment.
        guard let timestamp = Timestamp(iso8601: text) else { return }
        let written = timestamp.description
        #expect(written.utf8.count == 27)
        #expect(Timestamp(iso8601: written)?.microseconds == timestamp.microseconds, "\(text) was written as \(written)")
    }

    @Test func roundTripsFormatThenParse() throws {
        // A deterministic spread of values, including negatives and every microsecond digit.
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        var values: [Int64] = [0, 1, -1, 999_999, -999_999, 1_000_000, -1_000_001]
        for _ in 0..<2000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            // Roughly years 1700...2240.
            values.append(Int64(bitPattern: state >> 1) % 8_500_000_000_000_000)
        }
        for value in values {
            let text = Timestamp(microseconds: value).description
            #expect(text.utf8.count == 27)
            #expect(Timestamp(iso8601: text)?.microseconds == value, "\(value) → \(text)")
        }
    }

    @Test func roundTripsParseThenFormat() throws {
        for text in ["2024-02-29T12:34:56.789012Z", "1999-12-31T23:59:59.999999Z", "2000-01-01T00:00:00.000000Z",
                     "1901-06-15T08:09:10.111111Z", "2026-11-27T13:16:40.123456Z"] {
            #expect(Timestamp(iso8601: text)?.description == text)
        }
    }

    @Test func agreesWithFoundation() throws {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        var state: UInt64 = 42
        for _ in 0..<500 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            // Seconds from 1901 to 2100.
            let seconds = Int64(state >> 33) % 6_300_000_000 - 2_170_000_000
            let micros = Int64(state & 0xFFFFF) % 1_000_000
            let text = Timestamp(microseconds: seconds * 1_000_000 + micros).description
            let expected = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            #expect(text.prefix(19) == expected.prefix(19), "\(seconds)")
            #expect(text.dropFirst(20).prefix(6) == String(format: "%06lld", micros))
        }
    }

    @Test func civilCalendarIsInverse() {
        for days in stride(from: Int64(-800_000), through: 800_000, by: 97) {
            let (year, month, day) = Timestamp.civil(fromDays: days)
            #expect((1...12).contains(month) && (1...31).contains(day))
            #expect(Timestamp.days(fromCivil: year, month, day) == days)
        }
    }

    @Test func nowIsRecentAndOrdered() {
        let a = Timestamp.now()
        let b = Timestamp.now()
        #expect(a <= b)
        // After 2024-01-01 and before 2100-01-01.
        #expect(a.microseconds > 1_704_067_200_000_000 && a.microseconds < 4_102_444_800_000_000)
        #expect(Timestamp(microseconds: -1) < Timestamp(microseconds: 0))
    }

    @Test func textCacheWritesWhatWriteWrites() {
        // Runs within a second, across seconds, days and years, before 1970, in any order.
        var values: [Int64] = [0, 1, 999_999, 1_000_000, 1_000_001, -1, -999_999, -1_000_000, -1_000_001,
                               1_795_000_000_123_456, 1_795_000_000_999_999, 1_795_000_001_000_000, 1_795_000_000_000_001]
        var generator = TestRandom(seed: 7)
        var current: Int64 = 1_700_000_000_000_000
        for _ in 0..<5000 {
            current += Int64(generator.next() % 400_000)
            values.append(current)
            if generator.next() % 50 == 0 { values.append(Int64(generator.next() % 253_402_300_799_000_000)) }
        }
        var cache = Timestamp.TextCache()
        var cached = [UInt8](repeating: 0, count: Timestamp.textLength)
        var plain = [UInt8](repeating: 0, count: Timestamp.textLength)
        for value in values {
            let timestamp = Timestamp(microseconds: value)
            cached.withUnsafeMutableBufferPointer { cache.write(timestamp, into: $0.baseAddress!) }
            plain.withUnsafeMutableBufferPointer { timestamp.write(into: $0.baseAddress!) }
            #expect(cached == plain, "\(value)")
        }
    }

    @Test func parseCacheParsesWhatAFreshParseParses() {
        let texts = [
            "2026-11-27T13:16:40.123456Z", "2026-11-27T13:16:40.5Z", "2026-11-27T13:16:40Z", "2026-11-27T13:16:40+01:00",
            "2026-11-27T13:16:40.1x", "2026-11-27T13:16:40.", "2026-11-27T13:16:40-0230", "2026-11-27T13:16:41.000001Z",
            "2026-02-30T13:16:41Z", "2026-02-30T13:16:41Z", "2024-02-29T00:00:00Z", "2024-02-29T00:00:00.999Z",
            "0000-01-01T00:30:00+01:00", "0000-01-01T00:30:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-00:01",
            "2026-11-27 13:16:40Z", "2026-11-27T13:16:4", "2026-11-27T13:16:40Z ", "2026-11-27T25:16:40Z", "2026-11-27T13:16:40Z",
        ]
        var cache = Timestamp.ParseCache()
        for text in texts + texts.reversed() {
            let cached = Array(text.utf8).withUnsafeBufferPointer { Timestamp(iso8601UTF8: $0, cache: &cache) }
            #expect(cached == Timestamp(iso8601: text), "\(text)")
        }
    }
}
