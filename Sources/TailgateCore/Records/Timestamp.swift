#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// A moment in UTC with microsecond precision, written on the wire as ISO-8601
/// (`2026-11-27T13:16:40.123456Z`).
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microseconds: Int64

    /// Makes a timestamp from microseconds since the Unix epoch.
    public init(microseconds: Int64) { self.microseconds = microseconds }

    /// The current wall-clock time.
    public static func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(microseconds: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.microseconds < rhs.microseconds }

    /// The ISO-8601 text, always 27 characters.
    public var description: String {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return String(buffer: buffer)
    }

    /// Writes the ISO-8601 text (no quotes) into `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.textLength) { raw in
            write(into: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return Self.textLength
        }
    }

    /// The length of the ISO-8601 text.
    public static let textLength = 27

    /// Writes the 27 bytes of ISO-8601 text at `out`.
    func write(into out: UnsafeMutablePointer<UInt8>) {
        var seconds = microseconds / 1_000_000
        var micros = microseconds % 1_000_000
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (year, month, day) = Self.civil(fromDays: days)
        func put(_ value: Int64, at index: Int, digits: Int) {
            var value = value
            for offset in stride(from: digits - 1, through: 0, by: -1) {
                out[index + offset] = UInt8(truncatingIfNeeded: 0x30 + value % 10)
                value /= 10
            }
        }
        put(year, at: 0, digits: 4); out[4] = UInt8(ascii: "-")
        put(month, at: 5, digits: 2); out[7] = UInt8(ascii: "-")
        put(day, at: 8, digits: 2); out[10] = UInt8(ascii: "T")
        put(secondOfDay / 3600, at: 11, digits: 2); out[13] = UInt8(ascii: ":")
        put(secondOfDay / 60 % 60, at: 14, digits: 2); out[16] = UInt8(ascii: ":")
        put(secondOfDay % 60, at: 17, digits: 2); out[19] = UInt8(ascii: ".")
        put(micros, at: 20, digits: 6); out[26] = UInt8(ascii: "Z")
    }

    /// Remembers the text of the last whole second written, so that the records of one batch (nearly
    /// always within the same second) only format their microseconds.
    public struct TextCache {
        private var second = Int64.min
        private var prefix: (UInt64, UInt64, UInt64) = (0, 0, 0)  // "YYYY-MM-DDTHH:MM:SS." (20 bytes)

        public init() {}

        /// Writes the 27 bytes of `timestamp`'s ISO-8601 text at `out`.
        mutating func write(_ timestamp: Timestamp, into out: UnsafeMutablePointer<UInt8>) {
            var second = timestamp.microseconds / 1_000_000
            var micros = timestamp.microseconds % 1_000_000
            if micros < 0 { micros += 1_000_000; second -= 1 }
            if second != self.second {
                timestamp.write(into: out)
                withUnsafeMutableBytes(of: &prefix) { $0.copyMemory(from: UnsafeRawBufferPointer(start: out, count: 20)) }
                self.second = second
                return
            }
            withUnsafeBytes(of: &prefix) { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: 20) }
            for offset in stride(from: 25, through: 20, by: -1) {
                out[offset] = UInt8(truncatingIfNeeded: 0x30 + micros % 10)
                micros /= 10
            }
            out[26] = UInt8(ascii: "Z")
        }
    }

    /// Parses ISO-8601 as publishers send it: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    public init?(iso8601 text: some StringProtocol) {
        var text = String(text)
        guard let parsed = text.withUTF8({ Timestamp(iso8601UTF8: $0) }) else { return nil }
        self = parsed
    }

    /// Parses ISO-8601 from its UTF-8 bytes (the ingest path: no string is made).
    public init?(iso8601UTF8 bytes: UnsafeBufferPointer<UInt8>) {
        var cache = ParseCache()
        self.init(iso8601UTF8: bytes, cache: &cache)
    }

    /// Remembers the date and time (to the second) of the last text parsed, so that a stream of
    /// timestamps within the same second only parses its fraction and zone.
    public struct ParseCache {
        private var prefix: (UInt64, UInt64, UInt32) = (0, 0, 0)  // the first 19 bytes, zero-padded
        private var localSeconds: Int64?  // what they mean, before the zone offset

        public init() {}

        fileprivate static func key(_ bytes: UnsafeBufferPointer<UInt8>) -> (UInt64, UInt64, UInt32) {
            var key: (UInt64, UInt64, UInt32) = (0, 0, 0)
            withUnsafeMutableBytes(of: &key) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[0..<19])) }
            return key
        }

        fileprivate func lookup(_ key: (UInt64, UInt64, UInt32)) -> Int64? {
            guard let localSeconds, key == prefix else { return nil }
            return localSeconds
        }

        fileprivate mutating func store(_ key: (UInt64, UInt64, UInt32), _ seconds: Int64) {
            prefix = key
            localSeconds = seconds
        }
    }

    /// Parses ISO-8601 from its UTF-8 bytes, reusing the date and time of the previous text when
    /// its first 19 bytes (`YYYY-MM-DDTHH:MM:SS`) are the same.
    public init?(iso8601UTF8 bytes: UnsafeBufferPointer<UInt8>, cache: inout ParseCache) {
        func number(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[from..<from + count] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard bytes.count >= 19 else { return nil }
        let key = ParseCache.key(bytes)
        let localSeconds: Int64
        if let cached = cache.lookup(key) {
            localSeconds = cached
        } else {
            guard bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
                  bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: " "),
                  bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
                  let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
                  let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
                  (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61,
                  day <= Self.daysInMonth(year, month)
            else { return nil }
            localSeconds = Self.days(fromCivil: year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            cache.store(key, localSeconds)
        }
        var index = 19
        var micros: Int64 = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                if digits < 6 { micros = micros * 10 + Int64(bytes[index] - 0x30) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "Z"), UInt8(ascii: "z"):
                index += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                let sign: Int64 = bytes[index] == UInt8(ascii: "+") ? 1 : -1
                guard let hours = number(index + 1, 2) else { return nil }
                var minutesAt = index + 3
                if minutesAt < bytes.count, bytes[minutesAt] == UInt8(ascii: ":") { minutesAt += 1 }
                guard let minutes = number(minutesAt, 2), hours <= 23, minutes <= 59 else { return nil }
                offsetSeconds = sign * (hours * 3600 + minutes * 60)
                index = minutesAt + 2
            default:
                return nil
            }
        }
        guard index == bytes.count else { return nil }
        let seconds = localSeconds - offsetSeconds
        // The offset may not carry the moment out of the years 0000…9999, which the wire format can hold.
        guard seconds >= Self.firstSecond, seconds < Self.endSecond else { return nil }
        self.microseconds = seconds * 1_000_000 + micros
    }

    private static let firstSecond = days(fromCivil: 0, 1, 1) * 86_400
    private static let endSecond = days(fromCivil: 10_000, 1, 1) * 86_400

    static func daysInMonth(_ year: Int64, _ month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Howard Hinnant's civil-calendar algorithms.
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
