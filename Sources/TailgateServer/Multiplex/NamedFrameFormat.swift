import NIOCore
import TailgateCore

/// `/ws/streams`' wire format: text frames whose messages name their worker; `logs` compressed once
/// per batch and window when the connection agreed on permessage-deflate.
struct NamedFrameFormat: SubscriptionFormat {
    let deflate: DeflateSettings?

    /// What a compressed rendering needs.
    struct DeflateSettings: Sendable {
        let windowBits: Int
        let threshold: Int
        let pool: DeflaterPool
        let statistics: GatewayStatistics
    }

    var namesWorker: Bool { true }

    func rendering(for worker: WorkerID) -> BatchRendering {
        if let deflate { return NamedDeflateFrameRendering(worker: worker, settings: deflate) }
        return NamedFrameRendering(worker: worker)
    }

    func logs(_ payload: ByteBuffer, worker: WorkerID, lastSeq: UInt64) -> ByteBuffer {
        ServerFrames.frame(.text, payload: LogsEnvelope.naming(worker, in: payload))
    }

    func control(_ json: ByteBuffer, lastSeq: UInt64?) -> ByteBuffer {
        ServerFrames.frame(.text, payload: json)
    }
}

/// A worker's batch as one uncompressed text frame of `{"type":"logs","worker":"ID","records":[…]}`.
struct NamedFrameRendering: BatchRendering {
    let worker: WorkerID

    var key: Int { 200 }

    func render(_ batch: Batch) -> ByteBuffer {
        ServerFrames.frame(.text, payload: LogsEnvelope.naming(worker, in: batch.payload))
    }
}

/// A worker's batch as one permessage-deflate frame of `{"type":"logs","worker":"ID","records":[…]}`,
/// compressed once for every `/ws/streams` connection with the same server window.
struct NamedDeflateFrameRendering: BatchRendering {
    let worker: WorkerID
    let settings: NamedFrameFormat.DeflateSettings

    var key: Int { 300 + settings.windowBits }

    func render(_ batch: Batch) -> ByteBuffer {
        DeflateFrameRendering.frame(LogsEnvelope.naming(worker, in: batch.payload), windowBits: settings.windowBits,
                                    threshold: settings.threshold, pool: settings.pool, statistics: settings.statistics)
    }
}
