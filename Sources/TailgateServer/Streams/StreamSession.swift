import NIOCore
import NIOWebSocket
import TailgateCore

/// One subscriber's stream after the WebSocket upgrade: `hello`, replay, live batches, `gap`, `end`.
///
/// The session is a cursor into its worker's ring: `nextSeq` is the first seq it has not sent yet.
/// While the connection is writable and the cursor is at the head, live batches go out as they come,
/// the same framed bytes as for every other subscriber. When the connection stops being writable the
/// session stops writing; once writable again it catches up from the ring (with a `gap` when the
/// ring has moved past the cursor). Records that left the ring are read from the store, a chunk at a
/// time, off the loop (the session waits for each chunk before it reads on); a stream of a stored run
/// that has ended reads only from the store and then ends. So the seqs it sends are always
/// `replay_from, replay_from + 1, …`.
///
/// It writes framed bytes itself (there is no frame encoder in the pipeline) and sits last in the
/// pipeline, after the frame decoder.
final class StreamSession: ChannelInboundHandler, BatchSubscriber, StreamWriting {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case starting
        /// Caught up: live batches are written as they come.
        case live
        /// Behind the head: catching up from the ring whenever writable.
        case behind
        /// Waiting for a chunk read from the store.
        case reading
        /// A close frame was sent; waiting for the client's.
        case closing
    }

    let source: StreamSource
    private let start: ReplayStart
    private let resumed: (Bool, reason: String?)?
    private let rendering: BatchRendering
    private let configuration: ServerConfiguration
    private let registry: SessionRegistry
    let statistics: GatewayStatistics
    /// Where closes are logged, and the client's address for them.
    private let log: ServerLog?
    private let client: String
    // The state read on every delivery is `@exclusivity(unchecked)`: only the channel's loop touches
    // it, never through overlapping accesses (see LoopSubscribers; Benchmarks/results/FINDINGS.md).
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    var channelContext: ChannelHandlerContext? { context }
    @exclusivity(unchecked) private var phase = Phase.starting
    /// The first seq not sent yet.
    @exclusivity(unchecked) private(set) var nextSeq: UInt64 = 0
    /// Mirrors `channel.isWritable`: NIO reports every change synchronously, so the hot path reads a
    /// stored flag instead of asking the channel twice per batch.
    @exclusivity(unchecked) private var writable = true
    /// Every write goes through it: live batches straight to the socket once the stream has settled.
    @exclusivity(unchecked) var writer: StreamWriter
    private var unwritableSince: NIODeadline?
    private var lastInbound = NIODeadline.now()
    private var pingSentAt: NIODeadline?
    private var inbound: InboundMessages
    /// Unix seconds when the client's access token expires (auth on): the stream closes with 1008 then.
    private let tokenExpiry: Int64?

    init(source: StreamSource, start: ReplayStart, resumed: (Bool, reason: String?)?, rendering: BatchRendering, tokenExpiry: Int64?,
         inbound: InboundMessages, configuration: ServerConfiguration, registry: SessionRegistry, statistics: GatewayStatistics,
         log: ServerLog? = nil, client: String = "") {
        self.log = log
        self.client = client
        self.source = source
        self.start = start
        self.resumed = resumed
        self.rendering = rendering
        self.inbound = inbound
        self.tokenExpiry = tokenExpiry
        self.configuration = configuration
        self.registry = registry
        self.statistics = statistics
        self.writer = StreamWriter(directWrites: configuration.directWrites)
    }

    // MARK: Starting and stopping

    /// The `101` head of a handshake answered by `StreamHandshakeHandler`, not written yet: the hello
    /// frame goes into the same buffer (one write, one buffer for both).
    var switchingProtocols: ByteBuffer?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        writable = context.channel.isWritable
        let snapshot = source.snapshot()
        nextSeq = start.replayFrom(firstSeq: snapshot.firstSeq, lastSeq: snapshot.lastSeq)
        let hello = StreamMessages.hello(snapshot, replayFrom: nextSeq, resumed: resumed)
        if var head = switchingProtocols {
            switchingProtocols = nil
            ServerFrames.writeHeader(.text, payloadLength: hello.readableBytes, into: &head)
            head.writeImmutableBuffer(hello)
            writeThroughNIO(head, flush: false, context: context)
        } else {
            writeControl(hello)
        }
        if case .worker(let worker) = source { worker.fanOut.add(self, rendering: rendering, on: context.eventLoop) }
        registry.add(self)
        phase = .behind
        catchUp()
        context.flush()
    }

    /// The future of the connection's close, while the session is in a pipeline.
    var closeFuture: EventLoopFuture<Void>? { context?.channel.closeFuture }

    func handlerRemoved(context: ChannelHandlerContext) {
        detach()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        detach()
        context.fireChannelInactive()
    }

    private var attached = true
    private func detach() {
        guard attached, let context else { return }
        attached = false
        if case .worker(let worker) = source { worker.fanOut.remove(self, on: context.eventLoop) }
        registry.remove(self)
    }

    /// Sends a close frame with `code` and `reason`, then closes the connection once the client
    /// answers (or after a short wait).
    func close(code: WebSocketErrorCode, reason: String) {
        guard let context, phase != .closing else { return }
        phase = .closing
        detach()
        // Counted before the frame leaves: a client that sees the close may look at /api/stats at once.
        statistics.closes(code: code)
        log?.subscriberClosed(worker: source.workerID.description, client: client, code: code, reason: reason)
        writeThroughNIO(ServerFrames.close(code: code, reason: reason), flush: true, context: context)
        context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) { [weak self] in
            self?.context?.close(promise: nil)
        }
    }

    // MARK: Sending

    private func writeControl(_ message: ByteBuffer) {
        guard let context else { return }
        writeThroughNIO(ServerFrames.frame(.text, payload: message), flush: false, context: context)
    }

    func offer(_ batch: Batch, rendered: ByteBuffer) {
        guard phase == .live, context != nil else { return }
        if nextSeq == batch.firstSeq && writable {
            nextSeq = batch.lastSeq + 1
            writeLive(rendered)
            registry.delivery.wroteLive(batch, wireBytes: rendered.readableBytes, streams: registry.count)
            if !writable { sampleBufferedBytes() }
        } else if nextSeq <= batch.lastSeq {
            phase = .behind
            catchUp()
        }
    }

    func workerEnded() {
        guard phase == .live else { return }
        phase = .behind
        catchUp()
    }

    /// Writes from the ring while the connection is writable, until caught up.
    private func catchUp() {
        guard phase == .behind, let context else { return }
        var wrote = false
        defer {
            if wrote {
                sampleBufferedBytes()
                context.flush()
            }
        }
        while writable {
            switch source.read(at: nextSeq) {
            case .gap(let from, let to):
                nextSeq = to + 1
                writeControl(StreamMessages.gap(from: from, to: to))
                statistics.gaps.add(1, ordering: .relaxed)
            case .batch(let batch):
                let bytes: ByteBuffer
                let payloadBytes: Int
                if batch.firstSeq == nextSeq {
                    bytes = rendering.bytes(for: batch)
                    payloadBytes = batch.payload.readableBytes
                } else {
                    let payload = batch.payload(from: nextSeq)
                    bytes = ServerFrames.frame(.text, payload: payload)
                    payloadBytes = payload.readableBytes
                    statistics.partialFrames.add(1, ordering: .relaxed)
                }
                registry.delivery.wrote(records: Int(batch.lastSeq - nextSeq + 1), payloadBytes: payloadBytes, wireBytes: bytes.readableBytes)
                nextSeq = batch.lastSeq + 1
                writeThroughNIO(bytes, flush: false, context: context)
            case .stored(let from, let through):
                readStored(from: from, through: through, context: context)
                return
            case .caughtUp(let ended):
                if ended {
                    writeControl(StreamMessages.end(worker: source.workerID, lastSeq: nextSeq - 1, epoch: source.runID.epoch, ending: source.ending))
                    close(code: .normalClosure, reason: "worker stopped")
                } else {
                    phase = .live
                }
                return
            }
            wrote = true
        }
    }

    /// The most bytes of one chunk read from the store: what a session holds besides its socket buffer.
    static let storedChunkBytes = 64 << 10

    /// Reads the next chunk of records that left the ring from the store; catching up goes on when it comes.
    private func readStored(from: UInt64, through: UInt64, context: ChannelHandlerContext) {
        guard let store = source.store else { return }
        phase = .reading
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        store.read(source.runID, from: from, through: through, maxBytes: Self.storedChunkBytes, on: context.eventLoop).whenComplete { result in
            loopBound.value.storedChunkArrived(result, from: from, through: through)
        }
    }

    private func storedChunkArrived(_ result: Result<StoredChunk, Error>, from: UInt64, through: UInt64) {
        guard phase == .reading, let context, nextSeq == from else { return }
        phase = .behind
        switch result {
        case .success(.records(let batch)) where batch.firstSeq == from:
            let bytes = rendering.bytes(for: batch)
            nextSeq = batch.lastSeq + 1
            writeThroughNIO(bytes, flush: false, context: context)
            statistics.storedChunks.add(1, ordering: .relaxed)
            registry.delivery.wrote(records: batch.count, payloadBytes: batch.payload.readableBytes, wireBytes: bytes.readableBytes)
        case .success(.gap(_, let to)) where to >= from:
            nextSeq = min(to, through) + 1
            writeControl(StreamMessages.gap(from: from, to: nextSeq - 1))
            statistics.gaps.add(1, ordering: .relaxed)
        default:
            // Nothing stored from `from` (a failed disk lost it), or the read failed: an explicit gap.
            nextSeq = through + 1
            writeControl(StreamMessages.gap(from: from, to: through))
            statistics.gaps.add(1, ordering: .relaxed)
        }
        context.flush()
        catchUp()
    }

    private func sampleBufferedBytes() {
        if let bytes = try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes) {
            statistics.recordBuffered(bytes)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable {
            unwritableSince = nil
            catchUp()
        } else if unwritableSince == nil {
            unwritableSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastInbound = .now()
        switch ClientFrame.classify(frame) {
        case .violation(let code, let reason):
            close(code: code, reason: reason)
        case .ping(let pong):
            writeThroughNIO(pong, flush: true, context: context)
        case .pong:
            pingSentAt = nil
        case .close(let reply, let refused):
            if phase == .closing {
                context.close(promise: nil)
            } else {
                if let refused { statistics.closes(code: refused) }
                phase = .closing
                detach()
                let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenComplete { _ in loopBoundContext.value.close(promise: nil) }
                writeThroughNIO(reply, flush: true, context: context, promise: written)
            }
        case .data:
            if case .close(let code, let reason) = inbound.receive(frame) {
                close(code: code, reason: reason)
            } else if frame.fin && inbound.lastWasCompressed {
                statistics.inflatedMessages.add(1, ordering: .relaxed)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            close(code: .messageTooLarge, reason: "inbound messages are limited to \(configuration.maxInboundMessageBytes) bytes")
        case is NIOWebSocketError:
            close(code: .protocolError, reason: "invalid frame")
        default:
            context.close(promise: nil)
        }
    }

    // MARK: Timers

    /// Checked about once a second: stalls and keep-alive pings.
    func tick(now: NIODeadline) {
        guard let context, phase != .closing else { return }
        if let tokenExpiry, Timestamp.now().microseconds / 1_000_000 >= tokenExpiry {
            close(code: .policyViolation, reason: "access token expired")
            return
        }
        // Both closes queue the 1013 frame behind what is buffered and keep the connection for close()'s
        // grace period, so that a client that reads again in time gets the frame; otherwise it is dropped.
        if let since = unwritableSince, !writable, now - since >= configuration.stallTimeout {
            close(code: .tryAgainLater, reason: "stalled: no progress for \(configuration.stallTimeout.nanoseconds / 1_000_000_000) s")
            return
        }
        if let sent = pingSentAt {
            if now - sent >= configuration.pongTimeout {
                close(code: .tryAgainLater, reason: "no pong within \(configuration.pongTimeout.nanoseconds / 1_000_000_000) s")
            }
        } else if now - lastInbound >= configuration.pingInterval {
            pingSentAt = now
            writeThroughNIO(ServerFrames.frame(.ping, payload: ByteBuffer()), flush: true, context: context)
        }
    }
}
