import ArgumentParser

/// Reads sizes such as `8MiB`, `512KiB`, `1GiB`, `65536` (bytes).
enum ByteSize {
    static func parse(_ text: String) throws -> Int {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 1_000_000_000),
                                      ("MB", 1_000_000), ("KB", 1000), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let number = Int(text.dropLast(suffix.count)), number >= 0 {
                let (bytes, overflow) = number.multipliedReportingOverflow(by: factor)
                if !overflow { return bytes }
                throw ValidationError("'\(text)' is too large a size")
            }
            break
        }
        if let number = Int(text), number >= 0 { return number }
        throw ValidationError("'\(text)' is not a size (examples: 65536, 512KiB, 8MiB, 1GiB)")
    }
}
