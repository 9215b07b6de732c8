#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import Synchronization

/// Consecutive records encoded once into one `logs` message: `{"type":"logs","records":[…]}`.
///
/// A batch is immutable. The same `payload` bytes go to every subscriber, and bytes derived from it
/// (a WebSocket frame, a compressed frame) are made once per kind and cached in the batch, so that a
/// thousand subscribers cost one framing and one compression, not a thousand.
public final class Batch: Sendable {
    /// The seq of the first record.
    public let firstSeq: UInt64
    /// The seq of the last record.
    public let lastSeq: UInt64
    /// The whole `logs` message as JSON.
    public let payload: ByteBuffer
    /// Where each record starts inside `payload` (record `i` has seq `firstSeq + i`).
    private let offsets: [UInt32]
    private let derived = Lock<[(key: Int, bytes: ByteBuffer)]>([])

    static let prefix: StaticString = "{\"type\":\"logs\",\"records\":["
    static let suffix: StaticString = "]}"

    init(firstSeq: UInt64, payload: ByteBuffer, offsets: [UInt32]) {
        precondition(!offsets.isEmpty)
        self.firstSeq = firstSeq
        self.lastSeq = firstSeq + UInt64(offsets.count) - 1
        self.payload = payload
        self.offsets = offsets
    }

    /// How many records the batch holds.
    public var count: Int { offsets.count }

    /// The bytes of the records alone (no envelope, no commas).
    public var recordBytes: Int { recordBytes(from: firstSeq) }

    /// The encoded JSON object of the record with `seq`, sharing the batch's storage (no copy).
    public func record(_ seq: UInt64) -> ByteBuffer {
        let (start, end) = range(of: seq)
        return payload.getSlice(at: payload.readerIndex + start, length: end - start)!
    }

    /// Bytes of the record with `seq`.
    func recordSize(_ seq: UInt64) -> Int {
        let (start, end) = range(of: seq)
        return end - start
    }

    /// Bytes of the records from `seq` to the end of the batch.
    func recordBytes(from seq: UInt64) -> Int {
        let (start, _) = range(of: seq)
        return payload.readableBytes - 2 - start - Int(lastSeq - seq)
    }

    private func range(of seq: UInt64) -> (Int, Int) {
        precondition(seq >= firstSeq && seq <= lastSeq, "seq \(seq) outside batch \(firstSeq)...\(lastSeq)")
        let index = Int(seq - firstSeq)
        let start = Int(offsets[index])
        let end = index + 1 < offsets.count ? Int(offsets[index + 1]) - 1 : payload.readableBytes - 2
        return (start, end)
    }

    /// A new `logs` message holding this batch's records from `seq` on (one copy).
    public func payload(from seq: UInt64) -> ByteBuffer {
        if seq == firstSeq { return payload }
        let (start, _) = range(of: seq)
        var out = ByteBufferAllocator().buffer(capacity: payload.readableBytes - start + 32)
        out.writeStaticString(Self.prefix)
        out.writeImmutableBuffer(payload.getSlice(at: payload.readerIndex + start, length: payload.readableBytes - start)!)
        return out
    }

    /// Its records from `seq` (one of them) on, through `bound`, about `maxBytes` at most (at least one
    /// record), as a batch of their own: itself when that is all of it. What a store's read answers from a
    /// batch still queued for its writer.
    public func slice(from seq: UInt64, through bound: UInt64, maxBytes: Int) -> Batch {
        if seq == firstSeq && lastSeq <= bound && recordBytes <= maxBytes { return self }
        var lines = ByteBufferAllocator().buffer(capacity: min(maxBytes, recordBytes) + 1024)
        var current = seq
        while current <= min(lastSeq, bound) {
            let record = record(current)
            if current > seq && lines.readableBytes + record.readableBytes + 1 > maxBytes { break }
            lines.writeImmutableBuffer(record)
            lines.writeInteger(UInt8(ascii: "\n"))
            current += 1
        }
        return Batch.fromLines(firstSeq: seq, lines: lines)!
    }

    /// A batch of stored records: `lines` holds consecutive records' JSON from `firstSeq` on, each
    /// followed by `\n` (the store's format). The bytes are copied once into the `logs` envelope, never
    /// re-encoded. `nil` when `lines` holds no record.
    public static func fromLines(firstSeq: UInt64, lines: ByteBuffer) -> Batch? {
        var buffer = ByteBufferAllocator().buffer(capacity: lines.readableBytes + 32)
        buffer.writeStaticString(prefix)
        var offsets: [UInt32] = []
        lines.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var start = 0
            while start < raw.count {
                let rest = raw.count - start
                let end = memchr(base + start, 0x0A, rest).map { UnsafeRawPointer($0) - base } ?? raw.count
                if end > start {
                    if !offsets.isEmpty { buffer.writeInteger(UInt8(ascii: ",")) }
                    offsets.append(UInt32(buffer.readableBytes))
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                }
                start = end + 1
            }
        }
        guard !offsets.isEmpty else { return nil }
        buffer.writeStaticString(suffix)
        return Batch(firstSeq: firstSeq, payload: buffer, offsets: offsets)
    }

    /// Appends the records as NDJSON (each record's JSON followed by `\n`, the store's format) to
    /// `buffer`: one copy of the batch's records, with a newline put in place of each comma between them.
    public func writeLines(into buffer: inout ByteBuffer) {
        let offsets = self.offsets
        let start = Int(offsets[0])
        let length = payload.readableBytes - Self.suffix.utf8CodeUnitCount - start
        buffer.reserveCapacity(minimumWritableBytes: length + 1)
        payload.withUnsafeReadableBytes { source in
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length + 1) { target in
                let lines = target.baseAddress!
                lines.copyMemory(from: source.baseAddress! + start, byteCount: length)
                offsets.withUnsafeBufferPointer { starts in
                    // Record i starts just after the comma that ends record i - 1.
                    for next in starts.dropFirst() {
                        lines.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: Int(next) - 1 - start, as: UInt8.self)
                    }
                }
                lines.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: length, as: UInt8.self)
                return length + 1
            }
        }
    }

    /// Calls `body` with each record's JSON, in seq order (slices of the batch's storage, no copy).
    public func forEachRecord(_ body: (UInt64, ByteBuffer) -> Void) {
        for seq in firstSeq...lastSeq { body(seq, record(seq)) }
    }

    /// Bytes derived from this batch, made by `make` the first time a given `key` is asked for and
    /// shared afterwards. Thread-safe: concurrent callers with the same key get the same bytes, made once.
    public func derivedBytes(key: Int, make: (Batch) -> ByteBuffer) -> ByteBuffer {
        derived.withLock { cache in
            for entry in cache where entry.key == key { return entry.bytes }
            let bytes = make(self)
            cache.append((key, bytes))
            return bytes
        }
    }

    /// Merges consecutive batches into one, from `seq` on (one copy of the records: each batch's run of
    /// records is copied whole).
    static func merging(_ batches: some Collection<Batch>, from seq: UInt64) -> Batch {
        var buffer = ByteBufferAllocator().buffer(capacity: batches.reduce(0) { $0 + $1.payload.readableBytes })
        buffer.writeStaticString(prefix)
        var offsets: [UInt32] = []
        for batch in batches where batch.lastSeq >= seq {
            let first = Int(max(seq, batch.firstSeq) - batch.firstSeq)
            if !offsets.isEmpty { buffer.writeInteger(UInt8(ascii: ",")) }
            let start = Int(batch.offsets[first])
            let shift = buffer.readableBytes - start
            for offset in batch.offsets[first...] { offsets.append(UInt32(Int(offset) + shift)) }
            buffer.writeImmutableBuffer(batch.payload.getSlice(at: batch.payload.readerIndex + start,
                                                               length: batch.payload.readableBytes - suffix.utf8CodeUnitCount - start)!)
        }
        buffer.writeStaticString(suffix)
        return Batch(firstSeq: seq, payload: buffer, offsets: offsets)
    }
}

/// Builds a `Batch` by encoding records one after another into one buffer.
public struct BatchBuilder {
    private var buffer: ByteBuffer
    private var offsets: [UInt32] = []
    private let firstSeq: UInt64
    private var timestampCache = Timestamp.TextCache()

    /// Starts a batch whose first record will have `firstSeq`.
    public init(firstSeq: UInt64, capacity: Int = 4096) {
        self.firstSeq = firstSeq
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
        buffer.writeStaticString(Batch.prefix)
    }

    /// How many records have been added.
    public var count: Int { offsets.count }
    /// How many bytes the batch holds so far.
    public var byteCount: Int { buffer.readableBytes }
    /// The seq the next record gets.
    public var nextSeq: UInt64 { firstSeq + UInt64(offsets.count) }

    private mutating func startRecord() {
        if !offsets.isEmpty { buffer.writeInteger(UInt8(ascii: ",")) }
        offsets.append(UInt32(buffer.readableBytes))
    }

    /// Encodes `record` with the next seq.
    public mutating func append(_ record: LogRecord, timestamp: Timestamp) {
        let seq = nextSeq
        startRecord()
        RecordEncoder.encode(record, seq: seq, timestamp: timestamp, into: &buffer, timestampCache: &timestampCache)
    }

    /// The finished batch, or `nil` when nothing was added. The builder's buffer moves into the
    /// batch (no copy); the builder is empty afterwards.
    public mutating func finish() -> Batch? {
        guard !offsets.isEmpty else { return nil }
        buffer.writeStaticString(Batch.suffix)
        let payload = buffer
        buffer = ByteBuffer()
        let batch = Batch(firstSeq: firstSeq, payload: payload, offsets: offsets)
        offsets = []
        return batch
    }
}
