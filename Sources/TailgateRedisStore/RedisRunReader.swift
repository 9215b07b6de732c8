import NIOCore
import TailgateCore
import TailgateRedis

/// Turns stored stream entries (and batches not yet acknowledged) into the `StoredChunk` a reader asked
/// for, the way the embedded store does: the entries' NDJSON bytes are copied once into a `logs` batch
/// by `Batch.fromLines`, never re-encoded.
enum RedisRunReader {
    /// Entries read per `XRANGE` (each is one batch).
    static let entriesPerRead = 16

    /// One stream entry: a batch's seqs and its records as NDJSON.
    struct Entry {
        var firstSeq: UInt64
        var lastSeq: UInt64
        var lines: ByteBuffer
    }

    /// The `XRANGE key <seq>-0 + COUNT n` command of a read from `seq`.
    static func command(keys: RedisKeys, id: RunID, from seq: UInt64) -> RedisCommand {
        RedisCommand("XRANGE", [.string(keys.stream(id)), .string(RedisKeys.entryID(lastSeq: seq)), "+", "COUNT", .integer(Int64(entriesPerRead))])
    }

    /// The entries of an `XRANGE` reply; throws `RedisError.unexpectedReply` for any other shape.
    static func entries(_ reply: RESPValue) throws(RedisError) -> [Entry] {
        guard let items = reply.array else { throw .unexpectedReply("XRANGE gave \(reply)") }
        var entries: [Entry] = []
        entries.reserveCapacity(items.count)
        for item in items {
            guard let pair = item.array, pair.count == 2, let fields = pair[1].array else { throw .unexpectedReply("a stream entry of another shape") }
            var first: UInt64?
            var last: UInt64?
            var lines: ByteBuffer?
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                switch fields[index].string {
                case "f": first = fields[index + 1].string.flatMap { UInt64($0) }
                case "l": last = fields[index + 1].string.flatMap { UInt64($0) }
                case "b": lines = fields[index + 1].bytes
                default: break
                }
            }
            guard let first, let last, let lines, first <= last else { throw .unexpectedReply("a stream entry without f, l and b") }
            entries.append(Entry(firstSeq: first, lastSeq: last, lines: lines))
        }
        return entries
    }

    /// The chunk at `seq`: from the entries read from Redis, else from the batches still pending.
    static func chunk(entries: [Entry], pending: [Batch], from seq: UInt64, through bound: UInt64, maxBytes: Int) -> StoredChunk {
        guard seq <= bound else { return .none }
        if let first = entries.first {
            guard first.firstSeq <= seq else { return first.firstSeq <= bound ? .gap(from: seq, to: first.firstSeq - 1) : .none }
            var lines = ByteBufferAllocator().buffer(capacity: min(maxBytes, entries.reduce(0) { $0 + $1.lines.readableBytes }) + 64)
            var next = seq
            for entry in entries {
                guard entry.firstSeq <= next, next <= bound, lines.readableBytes < maxBytes else { break }
                next = copyLines(of: entry, from: next, through: bound, maxBytes: maxBytes, into: &lines)
            }
            return Batch.fromLines(firstSeq: seq, lines: lines).map(StoredChunk.records) ?? .none
        }
        for batch in pending where batch.lastSeq >= seq {
            guard batch.firstSeq <= seq else { return batch.firstSeq <= bound ? .gap(from: seq, to: batch.firstSeq - 1) : .none }
            return .records(batch.slice(from: seq, through: bound, maxBytes: maxBytes))
        }
        return .none
    }

    /// Appends the lines of `entry` from seq `from` on (up to `bound`, about `maxBytes` in all, at least
    /// one line); returns the seq after the last line copied.
    private static func copyLines(of entry: Entry, from: UInt64, through bound: UInt64, maxBytes: Int, into lines: inout ByteBuffer) -> UInt64 {
        let view = entry.lines.readableBytesView
        var position = view.startIndex
        var seq = entry.firstSeq
        while seq < from, position < view.endIndex {
            position = (view[position...].firstIndex(of: UInt8(ascii: "\n")) ?? view.endIndex - 1) + 1
            seq += 1
        }
        while seq <= min(entry.lastSeq, bound), position < view.endIndex {
            let end = (view[position...].firstIndex(of: UInt8(ascii: "\n")) ?? view.endIndex - 1) + 1
            if lines.readableBytes > 0 && lines.readableBytes + (end - position) > maxBytes { break }
            lines.writeBytes(view[position..<end])
            position = end
            seq += 1
        }
        return seq
    }
}
