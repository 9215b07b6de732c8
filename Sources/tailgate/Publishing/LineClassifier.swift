import TailgateCore

/// Finds the level a program's output line announces at its start: `ERROR: disk full`,
/// `[warning] retrying`, `WARN something`, `\u{1B}[31mFATAL\u{1B}[0m ...`.
///
/// A level word counts when it is the line's first word (after spaces and ANSI colour codes) and is
/// either written in capitals (`ERROR disk full`), followed by `:` in any case (`error: …`), or in
/// brackets in any case (`[info]`, `<Warn>`, `(DEBUG)`). So `Error handling enabled` stays plain text.
/// The words are TailgateCore's `LogLevel` names and aliases (WARN, ERR, CRIT, FATAL).
enum LineClassifier {
    /// The level announced at the start of `line`, or `nil` when it announces none.
    static func level(of line: String) -> LogLevel? {
        var bytes = Substring(line).utf8[...]
        skipBlanksAndEscapes(&bytes)
        var bracketed = false
        if let first = bytes.first, first == UInt8(ascii: "[") || first == UInt8(ascii: "<") || first == UInt8(ascii: "(") {
            bracketed = true
            bytes = bytes.dropFirst()
            skipBlanksAndEscapes(&bytes)
        }
        let word = bytes.prefix { isLetter($0) }
        guard word.count >= 3, word.count <= 8, let level = LogLevel(name: String(decoding: word, as: UTF8.self)) else { return nil }
        var rest = bytes.dropFirst(word.count)
        // A word that continues with digits or underscores (ERROR_CODE, INFO2) is not a level word.
        if let next = rest.first, isLetter(next) || (next >= 0x30 && next <= 0x39) || next == UInt8(ascii: "_") { return nil }
        skipEscapes(&rest)
        let capitals = word.allSatisfy { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
        let closing: Set<UInt8> = [UInt8(ascii: "]"), UInt8(ascii: ">"), UInt8(ascii: ")")]
        if bracketed { return rest.first.map { closing.contains($0) || $0 == UInt8(ascii: ":") } == true ? level : nil }
        if rest.first == UInt8(ascii: ":") { return level }
        return capitals ? level : nil
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
    }

    private static func skipBlanksAndEscapes(_ bytes: inout Substring.UTF8View.SubSequence) {
        while let first = bytes.first {
            if first == 0x20 || first == 0x09 {
                bytes = bytes.dropFirst()
            } else if first == 0x1B {
                skipEscapes(&bytes)
                if bytes.first == 0x1B { return }  // not a CSI sequence: stop here
            } else {
                return
            }
        }
    }

    /// Skips ANSI CSI sequences (`ESC [ … final-byte`), such as colour codes.
    private static func skipEscapes(_ bytes: inout Substring.UTF8View.SubSequence) {
        while bytes.first == 0x1B, bytes.dropFirst().first == UInt8(ascii: "[") {
            var rest = bytes.dropFirst(2)
            while let byte = rest.first, !(byte >= 0x40 && byte <= 0x7E) { rest = rest.dropFirst() }
            guard !rest.isEmpty else { return }
            bytes = rest.dropFirst()
        }
    }
}
