import NIOCore
import TailgateCore

/// `GET /api/stats`.
enum StatisticsJSON {
    static func render(_ gateway: GatewayContext) -> ByteBuffer {
        let statistics = gateway.statistics
        let ringMemory = gateway.bus.ringMemory()
        let values: [(String, Int)] = [
            ("connections_open", gateway.limiter.openConnections),
            ("connections_accepted", statistics.connectionsAccepted.load(ordering: .relaxed)),
            ("streams_open", statistics.streamsOpen.load(ordering: .relaxed)),
            ("streams_opened", statistics.streamsOpened.load(ordering: .relaxed)),
            ("gaps_sent", statistics.gaps.load(ordering: .relaxed)),
            ("partial_frames", statistics.partialFrames.load(ordering: .relaxed)),
            ("max_buffered_bytes_per_stream", statistics.maxBufferedBytesPerStream.load(ordering: .relaxed)),
            ("stalled_closes", statistics.stalledCloses.load(ordering: .relaxed)),
            ("too_big_closes", statistics.tooBigCloses.load(ordering: .relaxed)),
            ("ingest_pauses", statistics.ingestPauses.load(ordering: .relaxed)),
            ("refusals", statistics.refusals.load(ordering: .relaxed)),
            ("accept_backoffs", statistics.acceptBackoffs.load(ordering: .relaxed)),
            ("idle_publisher_closes", statistics.idlePublisherCloses.load(ordering: .relaxed)),
            ("deflate_compressions", statistics.compressions.load(ordering: .relaxed)),
            ("deflate_raw_bytes", statistics.compressedInputBytes.load(ordering: .relaxed)),
            ("deflate_compressed_bytes", statistics.compressedOutputBytes.load(ordering: .relaxed)),
            ("inflated_messages", statistics.inflatedMessages.load(ordering: .relaxed)),
            ("workers", gateway.bus.allWorkers().count),
            ("ring_bytes_total", ringMemory.total),
            ("ring_bytes_share_per_worker", ringMemory.sharePerWorker ?? -1),
        ]
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        buffer.writeStaticString("{")
        for (index, (name, value)) in values.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            buffer.writeJSONString(name)
            buffer.writeStaticString(":")
            buffer.writeJSONInteger(value)
        }
        // The store's condition: `memory-only`, `ok` or `failed` with the last error.
        let store = gateway.bus.store?.health() ?? StoreHealth(state: "memory-only")
        if let version = gateway.configuration.version {
            buffer.writeStaticString(",\"version\":")
            buffer.writeJSONString(version)
        }
        buffer.writeStaticString(",\"stored_chunks_sent\":")
        buffer.writeJSONInteger(statistics.storedChunks.load(ordering: .relaxed))
        buffer.writeStaticString(",\"store\":{\"state\":")
        buffer.writeJSONString(store.state)
        buffer.writeStaticString(",\"last_error\":")
        buffer.writeJSONStringOrNull(store.lastError)
        for (name, value) in [("failed_writes", Int(store.failedWrites)), ("stored_bytes", store.storedBytes), ("runs", store.runs),
                              ("write_queue", store.writeQueue)] {
            buffer.writeStaticString(",")
            buffer.writeJSONString(name)
            buffer.writeStaticString(":")
            buffer.writeJSONInteger(value)
        }
        buffer.writeStaticString("}}\n")
        return buffer
    }
}
