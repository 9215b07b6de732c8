import CZlib
import NIOCore

/// Inflates the compressed messages a client sends, under a cap on the inflated size so that a
/// small "zip bomb" can never grow memory past the cap.
final class Inflater {
    private var stream = z_stream()
    private let keepsContext: Bool
    private var ready = false

    enum Failure: Error {
        /// Inflated to more than the cap.
        case tooBig
        /// Not valid deflate data.
        case invalidData
    }

    /// `keepsContext`: the client may refer back to earlier messages (no `client_no_context_takeover`).
    init(keepsContext: Bool) { self.keepsContext = keepsContext }

    deinit { if ready { inflateEnd(&stream) } }

    /// The inflated message, at most `limit` bytes.
    func inflate(_ compressed: ByteBuffer, limit: Int) throws(Failure) -> ByteBuffer {
        if !ready {
            guard tailgate_inflateInit2(&stream, -15) == Z_OK else { throw .invalidData }
            ready = true
        } else if !keepsContext {
            inflateReset(&stream)
        }
        var input = compressed
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        var output = ByteBufferAllocator().buffer(capacity: min(limit + 1, 4096))
        var status: Int32 = Z_OK
        var overflow = false
        input.withUnsafeReadableBytes { inputBytes in
            stream.next_in = UnsafeMutablePointer(mutating: inputBytes.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = UInt32(inputBytes.count)
            while true {
                let room = limit + 1 - output.readableBytes
                if room <= 0 { overflow = true; break }
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { outputBytes in
                    stream.next_out = outputBytes.bindMemory(to: UInt8.self).baseAddress
                    stream.avail_out = UInt32(room)
                    status = CZlib.inflate(&stream, Z_SYNC_FLUSH)
                    return room - Int(stream.avail_out)
                }
                if status == Z_STREAM_END { break }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { status = Z_OK; break }
                if status != Z_OK { break }
                if stream.avail_in == 0 && stream.avail_out > 0 { break }
            }
        }
        stream.next_in = nil
        stream.next_out = nil
        if overflow || output.readableBytes > limit {
            ready = false
            inflateEnd(&stream)
            throw .tooBig
        }
        guard status == Z_OK || status == Z_STREAM_END else {
            ready = false
            inflateEnd(&stream)
            throw .invalidData
        }
        return output
    }
}
