import NIOCore

/// A stream's writes: through NIO, and, once the stream has settled, its live batches straight to
/// the socket (`DirectSocketWriter`) whenever nothing of it waits in NIO.
///
/// A stream looks for its socket after `liveWritesBeforeDirect` live writes through NIO, and only when
/// NIO then holds none of its bytes: a stream that lives that long is worth the search (a string and
/// two `getsockopt`s), and the short streams of a connect storm never pay for it. From then on every
/// NIO write of the stream (replay, control messages, pings, the rest of a direct write the kernel
/// took in part) is counted until NIO completes it, and a live batch goes to the socket directly only
/// while that count is 0, so bytes never pass each other.
struct StreamWriter {
    /// Live writes through NIO before a stream looks for its socket.
    static let liveWritesBeforeDirect = 32

    private var direct: DirectSocketWriter?
    /// NIO writes not completed yet (counted only once `direct` is set).
    private var queuedInNIO = 0
    /// Live writes left until the search; 0 once it was made (or direct writes are off).
    private var liveWritesUntilSearch: Int

    init(directWrites: Bool) {
        liveWritesUntilSearch = directWrites ? Self.liveWritesBeforeDirect : 0
    }

    /// A writer that writes directly from the start (tests).
    init(direct: DirectSocketWriter) {
        self.direct = direct
        liveWritesUntilSearch = 0
    }

    /// The direct writer to use for the next live batch, when there is one and NIO holds nothing.
    @inline(__always)
    var directNow: DirectSocketWriter? { queuedInNIO == 0 ? direct : nil }

    /// Called before a NIO write: true when it must be counted.
    mutating func nioWriteStarts() -> Bool {
        guard direct != nil else { return false }
        queuedInNIO += 1
        return true
    }

    mutating func nioWriteEnded() {
        queuedInNIO -= 1
    }

    /// Called after a live write through NIO: searches for the socket when it is time.
    mutating func liveWroteThroughNIO(context: ChannelHandlerContext, statistics: GatewayStatistics) {
        guard direct == nil, liveWritesUntilSearch > 0 else { return }
        liveWritesUntilSearch -= 1
        guard liveWritesUntilSearch == 0 else { return }
        // Only from an empty NIO queue: what NIO holds must leave first. Else try after the next one.
        guard let buffered = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes), buffered == 0 else {
            liveWritesUntilSearch = 1
            return
        }
        direct = DirectSocketWriter.find(for: context.channel)
        if direct != nil { statistics.streamsWritingDirectly.add(1, ordering: .relaxed) }
    }
}

/// A session that writes through a `StreamWriter`: the one place its NIO writes are counted and its
/// live batches written.
protocol StreamWriting: AnyObject {
    var writer: StreamWriter { get set }
    var statistics: GatewayStatistics { get }
    /// The session's context while it is in a pipeline.
    var channelContext: ChannelHandlerContext? { get }
}

extension StreamWriting {
    /// Writes `bytes` through NIO, flushed when `flush`.
    func writeThroughNIO(_ bytes: ByteBuffer, flush: Bool, context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        var promise = promise
        if writer.nioWriteStarts() {
            let counted = promise ?? context.eventLoop.makePromise(of: Void.self)
            counted.futureResult.assumeIsolatedUnsafeUnchecked().whenComplete { _ in self.writer.nioWriteEnded() }
            promise = counted
        }
        if flush {
            context.writeAndFlush(NIOAny(bytes), promise: promise)
        } else {
            context.write(NIOAny(bytes), promise: promise)
        }
    }

    /// Writes and flushes a live batch: straight to the socket when the stream writes directly and NIO
    /// holds nothing of it (what the kernel does not take goes on through NIO), else through NIO. The
    /// direct path touches neither the context nor the channel.
    @inline(__always)
    func writeLive(_ bytes: ByteBuffer) {
        if let direct = writer.directNow {
            guard case .partial(let sent) = direct.write(bytes), let context = channelContext else { return }
            statistics.directWritesCutShort.add(1, ordering: .relaxed)
            writeThroughNIO(bytes.getSlice(at: bytes.readerIndex + sent, length: bytes.readableBytes - sent)!, flush: true, context: context)
            return
        }
        guard let context = channelContext else { return }
        writeThroughNIO(bytes, flush: true, context: context)
        writer.liveWroteThroughNIO(context: context, statistics: statistics)
    }
}
