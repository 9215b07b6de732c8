#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Writes a stream's live batches straight to its socket with one `send`, past NIO's channel write path.
///
/// With 1,000 subscribers NIO's path for one write (the pipeline's contexts, the head handler, the
/// channel core, its pending-writes manager and buffer) touches a handful of each subscriber's own
/// objects, a cache miss apiece; that was about a third of the gateway's CPU per delivered record and
/// most of its distance to the C ceiling (Benchmarks/results/FINDINGS.md, "Direct writes"). A direct
/// write touches the session and the shared batch bytes only.
///
/// It is safe only under three conditions, which `StreamWriter` and the sessions that use it
/// (`StreamSession`, `MultiplexSession`) keep:
/// - nothing of the stream is queued in NIO (every NIO write of the session is counted until it
///   completes, and a direct write goes out only when none is pending), so bytes never pass each other;
/// - no outbound handler sits between the session and the socket (the stream pipeline is the frame
///   decoder, which is inbound only, and the session; the gateway has no TLS of its own);
/// - the descriptor is still the channel's: NIO closes it on the channel's loop, the same thread as
///   every direct write, and tells the session (`channelInactive`, which takes it out of the fan-out)
///   before that loop runs anything else; live batches reach a session only from the fan-out's rounds,
///   which are loop tasks of their own, never from inside NIO's close.
///
/// A write the kernel takes only in part (or not at all: `EAGAIN`, or an error) hands the rest to NIO,
/// which queues it, waits for the socket, reports writability and sees errors and closes as before.
struct DirectSocketWriter {
    let descriptor: CInt

    /// What one write did.
    enum Outcome {
        /// The kernel took every byte.
        case whole
        /// It took this many bytes (0 when it took none, or the write failed): the rest goes to NIO.
        case partial(Int)
    }

    @inline(__always)
    func write(_ bytes: ByteBuffer) -> Outcome {
        let count = bytes.readableBytes
        // MSG_NOSIGNAL: a peer that reset the connection gives EPIPE here, never SIGPIPE.
        let sent = bytes.withUnsafeReadableBytes { send(descriptor, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
        if sent == count { return .whole }
        return .partial(max(sent, 0))
    }

    /// The socket of `channel`, or nil when it cannot be found and proven to be that channel's.
    ///
    /// NIO does not hand out a connection's descriptor; its description names it (`fd=N`). The number
    /// is trusted only when the socket it names has the same socket cookie (`SO_COOKIE`, unique per
    /// socket for the host's lifetime) as the channel's own socket, read through NIO. Call on the
    /// channel's loop.
    static func find(for channel: Channel) -> DirectSocketWriter? {
        #if os(Linux)
        guard let options = channel as? SocketOptionProvider else { return nil }
        let description = String(describing: channel)
        guard let marker = description.range(of: "fd=") else { return nil }
        guard let descriptor = CInt(description[marker.upperBound...].prefix(while: { $0 >= "0" && $0 <= "9" })) else { return nil }
        let cookie = FoundValue()
        options.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_COOKIE))
            .assumeIsolatedUnsafeUnchecked()
            .whenSuccess { (value: UInt64) in cookie.value = value }
        guard let channelCookie = cookie.value else { return nil }
        var value: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_COOKIE, &value, &length) == 0, value == channelCookie else { return nil }
        return DirectSocketWriter(descriptor: descriptor)
        #else
        return nil
        #endif
    }

    /// The channel's cookie: NIO answers a socket option asked on the channel's loop at once.
    private final class FoundValue {
        var value: UInt64?
    }
}
