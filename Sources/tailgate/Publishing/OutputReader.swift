import Dispatch
import Foundation
import TailgateCore
#if canImport(Glibc)
import Glibc
#endif

/// Reads one output stream of a program (or standard input) on its own thread until it ends: echoes
/// the bytes as they come (when asked), cuts them into lines and appends each line to the queue at once.
final class OutputReader: Sendable {
    let fd: Int32
    let stream: String
    let echoTo: Int32?
    let queue: OutgoingQueue
    let maxLineBytes: Int
    private let ended = DispatchSemaphore(value: 0)

    /// Reads `fd`; lines are marked `{"stream": stream}`; bytes are copied to `echoTo` when given.
    init(fd: Int32, stream: String, echoTo: Int32?, queue: OutgoingQueue, maxLineBytes: Int) {
        self.fd = fd
        self.stream = stream
        self.echoTo = echoTo
        self.queue = queue
        self.maxLineBytes = maxLineBytes
    }

    /// Starts reading on a new thread; `onEnd` is called there when the stream has ended.
    func start(onEnd: @escaping @Sendable () -> Void = {}) {
        Thread.detachNewThread { [self] in
            self.readAll()
            self.ended.signal()
            onEnd()
        }
    }

    /// Waits for the end of the stream, at most `timeout` seconds; `false` when it has not ended.
    func waitForEnd(timeout: Double) -> Bool {
        guard ended.wait(timeout: .now() + timeout) == .success else { return false }
        ended.signal()
        return true
    }

    private func readAll() {
        var splitter = LineSplitter(maxLineBytes: maxLineBytes)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let emit: (String) -> Void = { line in self.queue.append(.line(line, stream: self.stream)) }
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if let echoTo { writeAll(echoTo, buffer[0..<count]) }
            buffer.withUnsafeBytes { raw in
                splitter.feed(UnsafeRawBufferPointer(rebasing: raw[0..<count]), emit: emit)
            }
        }
        splitter.finish(emit: emit)
    }
}
