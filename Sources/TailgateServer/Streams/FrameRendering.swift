import NIOCore
import TailgateCore

/// Puts a batch on the wire as one uncompressed text frame.
struct PlainFrameRendering: BatchRendering {
    var key: Int { 0 }

    func render(_ batch: Batch) -> ByteBuffer {
        ServerFrames.frame(.text, payload: batch.payload)
    }
}
