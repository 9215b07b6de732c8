/// Finds the bytes a JSON string cannot hold as they are — `"`, `\` and control characters below
/// 0x20 — eight bytes at a time. Shared by the parser (where a string ends) and the writer (what to
/// escape); both are on the ingest and fan-out hot paths.
enum JSONByteScan {
    /// The index of the first such byte in `base[start..<end]`, or `end` when there is none.
    @inline(__always)
    static func firstSpecial(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> Int {
        var index = start
        while index + 8 <= end {
            if hasSpecial(UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)) { break }
            index += 8
        }
        while index < end {
            let byte = base[index]
            if byte < 0x20 || byte == 0x22 || byte == 0x5C { return index }
            index += 1
        }
        return end
    }

    /// Whether any byte of `word` is `"`, `\` or below 0x20 (exact; the classic "has zero byte" and
    /// "has byte less than n" tests).
    @inline(__always)
    static func hasSpecial(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let below = (word &- ones &* 0x20) & ~word
        let quoteZero = (quote &- ones) & ~quote
        let backslashZero = (backslash &- ones) & ~backslash
        return (below | quoteZero | backslashZero) & highs != 0
    }
}
