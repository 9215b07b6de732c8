import TailgateCore
import CZlib
import NIOCore
import Synchronization

/// Compresses one whole message at a time as permessage-deflate wants it: raw deflate, flushed with
/// `Z_SYNC_FLUSH`, the trailing `00 00 ff ff` removed (RFC 7692 §7.2.1), no context kept between
/// messages.
final class Deflater {
    private var stream = z_stream()
    let windowBits: Int32

    init?(windowBits: Int, level: Int) {
        self.windowBits = Int32(windowBits)
        guard tailgate_deflateInit2(&stream, Int32(level), -Int32(windowBits), 8) == Z_OK else { return nil }
    }

    deinit { deflateEnd(&stream) }

    /// The compressed form of `input`.
    func compress(_ input: ByteBuffer) -> ByteBuffer? {
        deflateReset(&stream)
        let bound = Int(deflateBound(&stream, UInt(input.readableBytes))) + 16
        var output = ByteBufferAllocator().buffer(capacity: bound)
        var status: Int32 = Z_OK
        input.withUnsafeReadableBytes { inputBytes in
            stream.next_in = UnsafeMutablePointer(mutating: inputBytes.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = UInt32(inputBytes.count)
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { outputBytes in
                stream.next_out = outputBytes.bindMemory(to: UInt8.self).baseAddress
                stream.avail_out = UInt32(outputBytes.count)
                status = deflate(&stream, Z_SYNC_FLUSH)
                return outputBytes.count - Int(stream.avail_out)
            }
        }
        stream.next_in = nil
        stream.next_out = nil
        guard status == Z_OK, stream.avail_in == 0, output.readableBytes >= 4 else { return nil }
        // Z_SYNC_FLUSH ends with an empty stored block: 00 00 ff ff, which the receiver adds back.
        output.moveWriterIndex(to: output.writerIndex - 4)
        return output
    }
}

/// Deflaters ready for use, by window size, shared by the loops (compression happens on whichever
/// loop first needs a batch compressed).
final class DeflaterPool: Sendable {
    private let idle = Lock<[Int: [UnsafeTransfer<Deflater>]]>([:])
    let level: Int

    init(level: Int) { self.level = level }

    func withDeflater<T>(windowBits: Int, _ body: (Deflater) -> T) -> T? {
        let deflater = idle.withLock { $0[windowBits]?.popLast()?.value } ?? Deflater(windowBits: windowBits, level: level)
        guard let deflater else { return nil }
        let result = body(deflater)
        let transfer = UnsafeTransfer(deflater)
        idle.withLock { pool in
            if pool[windowBits, default: []].count < 8 { pool[windowBits, default: []].append(transfer) }
        }
        return result
    }
}

/// Carries a non-Sendable value across a lock whose discipline makes it safe (one user at a time).
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
