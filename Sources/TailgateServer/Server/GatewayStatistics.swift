import NIOWebSocket
import Synchronization

/// Counters the gateway keeps about itself, shown by `/api/stats` and read by tests.
public final class GatewayStatistics: Sendable {
    /// Connections accepted since start.
    public let connectionsAccepted = Atomic<Int>(0)
    /// Stream connections open right now (until their socket closes).
    public let streamsOpen = Atomic<Int>(0)
    /// Streams opened since start.
    public let streamsOpened = Atomic<Int>(0)
    /// Of those, the ones whose handshake `StreamHandshakeHandler` answered itself (no HTTP handler).
    let streamsOpenedDirectly = Atomic<Int>(0)
    /// Streams whose live batches go straight to their socket (`StreamWriter`), since start.
    let streamsWritingDirectly = Atomic<Int>(0)
    /// Direct writes the kernel took only in part (or not at all): their rest went on through NIO.
    let directWritesCutShort = Atomic<Int>(0)
    /// `gap` messages sent.
    public let gaps = Atomic<Int>(0)
    /// Catch-up frames built for one subscriber because its cursor was inside a batch.
    public let partialFrames = Atomic<Int>(0)
    /// Chunks of records read from the store for streams (replay beyond the ring).
    public let storedChunks = Atomic<Int>(0)
    /// The most outbound bytes seen buffered for one stream (sampled whenever a stream pauses).
    public let maxBufferedBytesPerStream = Atomic<Int>(0)
    /// Streams closed with 1013 (stalled or unresponsive).
    public let stalledCloses = Atomic<Int>(0)
    /// Streams closed with 1009 (inbound message too big).
    public let tooBigCloses = Atomic<Int>(0)
    /// Batches compressed (once per distinct server window, whatever the number of subscribers).
    public let compressions = Atomic<Int>(0)
    /// Bytes given to the compressor.
    public let compressedInputBytes = Atomic<Int>(0)
    /// Bytes it produced.
    public let compressedOutputBytes = Atomic<Int>(0)
    /// Compressed messages received from clients and inflated.
    public let inflatedMessages = Atomic<Int>(0)
    /// Times an HTTP publisher was paused because its worker's queue was full (TCP backpressure).
    public let ingestPauses = Atomic<Int>(0)
    /// HTTP requests refused with a 4xx or 5xx status.
    public let refusals = Atomic<Int>(0)
    /// Ingest connections closed because their publisher sent nothing for `publisherIdleTimeout`.
    public let idlePublisherCloses = Atomic<Int>(0)
    /// Times accepting new connections failed (out of file descriptors or memory) and paused.
    public let acceptBackoffs = Atomic<Int>(0)
    /// Connections closed at once, unanswered, because they came far over a connection limit.
    public let connectionsDropped = Atomic<Int>(0)
    /// Records published over HTTP (`POST …/records`), counted per hand-over to the worker.
    public let ingestAccepted = Atomic<Int>(0)
    /// Lines of published bodies that were rejected (malformed, too long, worker stopped).
    public let ingestRejected = Atomic<Int>(0)
    /// Lines skipped because their publisher had sent them before (exactly-once publishing).
    public let ingestDuplicates = Atomic<Int>(0)
    /// The refusals above, by their stable code (`GatewayError.code`).
    public let refusalsByCode = RefusalCounters()

    public init() {}

    /// Counts a response of status 400 or more, under its refusal code when it has one.
    func refused(code: String?, status: Int) {
        refusals.add(1, ordering: .relaxed)
        refusalsByCode.count(code: code, status: status)
    }

    func closes(code: WebSocketErrorCode) {
        switch code {
        case .tryAgainLater: stalledCloses.add(1, ordering: .relaxed)
        case .messageTooLarge: tooBigCloses.add(1, ordering: .relaxed)
        default: break
        }
    }

    func recordBuffered(_ bytes: Int) {
        var current = maxBufferedBytesPerStream.load(ordering: .relaxed)
        while bytes > current {
            let (exchanged, original) = maxBufferedBytesPerStream.compareExchange(
                expected: current, desired: bytes, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}
