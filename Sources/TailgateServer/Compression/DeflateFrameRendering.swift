import NIOCore
import Synchronization
import TailgateCore

/// Puts a batch on the wire as one permessage-deflate frame (RSV1 set), compressed once for every
/// subscriber that agreed on the same server window; small batches go uncompressed.
struct DeflateFrameRendering: BatchRendering {
    let windowBits: Int
    let threshold: Int
    let pool: DeflaterPool
    let statistics: GatewayStatistics

    var key: Int { 100 + windowBits }

    func render(_ batch: Batch) -> ByteBuffer {
        Self.frame(batch.payload, windowBits: windowBits, threshold: threshold, pool: pool, statistics: statistics)
    }

    /// `payload` as one text frame: compressed (RSV1 set) when it is at least `threshold` bytes and
    /// compressing makes it smaller, else as it is.
    static func frame(_ payload: ByteBuffer, windowBits: Int, threshold: Int, pool: DeflaterPool, statistics: GatewayStatistics) -> ByteBuffer {
        guard payload.readableBytes >= threshold,
              let compressed = pool.withDeflater(windowBits: windowBits, { $0.compress(payload) }) ?? nil,
              compressed.readableBytes < payload.readableBytes
        else {
            return ServerFrames.frame(.text, payload: payload)
        }
        statistics.compressions.add(1, ordering: .relaxed)
        statistics.compressedInputBytes.add(payload.readableBytes, ordering: .relaxed)
        statistics.compressedOutputBytes.add(compressed.readableBytes, ordering: .relaxed)
        return ServerFrames.frame(.text, payload: compressed, compressed: true)
    }
}
