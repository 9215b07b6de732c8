import CoreMetrics
import NIOCore
import Synchronization
import TailgateCore

/// What the streams of one event loop have written: records, and the bytes of their `logs` messages
/// before and after compression; and a sample of publish-to-write latency, about once per batch.
///
/// Only the loop writes (each counter is a load and a store, never a read-modify-write: no lock
/// prefix, no contention); `/metrics` reads the counters from any thread. Nothing here allocates, and
/// every stored property is a `let` (no exclusivity check on the way).
final class StreamDeliveryCounters: Sendable {
    /// Records written to streams (live, replayed from the ring, read from the store).
    let records = Atomic<Int>(0)
    /// Bytes of the `logs` messages' JSON written, before compression.
    let payloadBytes = Atomic<Int>(0)
    /// Bytes of those messages as written: frame headers included, compressed where negotiated.
    let wireBytes = Atomic<Int>(0)
    /// Where publish-to-write samples go; `nil`: not measured.
    private let latency: CoreMetrics.Timer?
    // Written by the loop only: live writes left before the next sample, and a xorshift state to vary the gap.
    private let writesUntilSample = Atomic<Int>(1)
    private let random = Atomic<UInt64>(0x9E37_79B9_7F4A_7C15)

    init(latency: CoreMetrics.Timer? = nil) {
        self.latency = latency
    }

    /// Counts a `logs` message written to one stream.
    func wrote(records count: Int, payloadBytes payload: Int, wireBytes wire: Int) {
        records.store(records.load(ordering: .relaxed) &+ count, ordering: .relaxed)
        payloadBytes.store(payloadBytes.load(ordering: .relaxed) &+ payload, ordering: .relaxed)
        wireBytes.store(wireBytes.load(ordering: .relaxed) &+ wire, ordering: .relaxed)
    }

    /// Counts a live batch written to one of `streams` streams on this loop, and now and then measures
    /// how long its first record took from its timestamp to this write. One write in about `streams`
    /// is measured, at a varying place in the round over the subscribers: about one sample per batch,
    /// never one per subscriber.
    func wroteLive(_ batch: Batch, wireBytes wire: Int, streams: @autoclosure () -> Int) {
        wrote(records: batch.count, payloadBytes: batch.payload.readableBytes, wireBytes: wire)
        guard let latency else { return }
        let left = writesUntilSample.load(ordering: .relaxed) - 1
        guard left <= 0 else {
            writesUntilSample.store(left, ordering: .relaxed)
            return
        }
        var state = random.load(ordering: .relaxed)
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        random.store(state, ordering: .relaxed)
        writesUntilSample.store(1 + Int(state % UInt64(2 * max(1, streams()))), ordering: .relaxed)
        if let written = Self.timestamp(of: batch.record(batch.firstSeq)) {
            latency.recordNanoseconds(max(0, Timestamp.now().microseconds - written.microseconds) * 1000)
        }
    }

    /// The `timestamp` of an encoded record (`{"seq":N,"timestamp":"…",…}`: the encoder's fixed order).
    static func timestamp(of record: ByteBuffer) -> Timestamp? {
        record.withUnsafeReadableBytes { raw -> Timestamp? in
            let bytes = raw.bindMemory(to: UInt8.self)
            let key: StaticString = "\"timestamp\":\""
            let keyBytes = UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
            let searchEnd = min(bytes.count, 64) - keyBytes.count
            guard searchEnd >= 0 else { return nil }
            for start in 0...searchEnd where bytes[start] == keyBytes[0] {
                guard bytes[start..<(start + keyBytes.count)].elementsEqual(keyBytes) else { continue }
                let textStart = start + keyBytes.count
                guard textStart + Timestamp.textLength <= bytes.count else { return nil }
                return Timestamp(iso8601UTF8: UnsafeBufferPointer(rebasing: bytes[textStart..<(textStart + Timestamp.textLength)]))
            }
            return nil
        }
    }
}
