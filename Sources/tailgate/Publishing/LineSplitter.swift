import TailgateCore

/// Cuts a byte stream into lines (`\n`, with a `\r` before it removed), holding at most `maxLineBytes`
/// of a line: the rest of a longer line is counted and noted at its end, never buffered.
/// Invalid UTF-8 is replaced with U+FFFD, so every line is publishable text.
struct LineSplitter {
    let maxLineBytes: Int
    private var partial: [UInt8] = []
    private var overflow = 0

    init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    /// Feeds bytes; calls `emit` with each complete line.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, emit: (String) -> Void) {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            if let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                append(UnsafeRawBufferPointer(rebasing: bytes[start..<newline]))
                emit(takeLine())
                start = newline + 1
            } else {
                append(UnsafeRawBufferPointer(rebasing: bytes[start...]))
                start = bytes.endIndex
            }
        }
    }

    /// The last line, when the input ended without a newline.
    mutating func finish(emit: (String) -> Void) {
        if !partial.isEmpty || overflow > 0 { emit(takeLine()) }
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let room = maxLineBytes - partial.count
        if bytes.count <= room {
            partial.append(contentsOf: bytes)
        } else {
            partial.append(contentsOf: bytes.prefix(max(0, room)))
            overflow += bytes.count - max(0, room)
        }
    }

    private mutating func takeLine() -> String {
        if partial.last == UInt8(ascii: "\r") && overflow == 0 { partial.removeLast() }
        var line = String(decoding: partial, as: UTF8.self)
        if overflow > 0 { line += " [… \(overflow) more bytes cut by tailgate]" }
        partial.removeAll(keepingCapacity: partial.capacity <= 64 << 10)
        overflow = 0
        return line
    }
}
