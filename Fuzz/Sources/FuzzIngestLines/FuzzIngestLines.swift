import FuzzSupport
import NIOCore
import NIOEmbedded
import TailgateCore
@testable import TailgateServer

/// The bus the ingest target publishes into, on an embedded loop the target drives.
nonisolated(unsafe) private let loop = EmbeddedEventLoop()
nonisolated(unsafe) private let bus = try! LogBus(
    configuration: BusConfiguration(workerLimits: WorkerLimits(ringRecords: 1000, ringBytes: 1 << 20), idleStop: nil, ringMemoryTotal: nil),
    eventLoopGroup: loop)

/// libFuzzer target: the ingest line splitter. The first byte picks the format and where the body is
/// cut into reads; every line must be published or rejected, the records counted must match the
/// worker's seqs, and memory must stay bounded by the line limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIngestLines(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let control = data[0]
    let body = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let worker = try! bus.remoteWorker(WorkerID("fuzz")!)
    loop.advanceTime(by: .milliseconds(1))
    let before = worker.snapshot().lastSeq
    let session = IngestSession(worker: worker, format: control & 1 == 0 ? .ndjson : .text, maxLineBytes: 64)
    let step = max(1, Int(control >> 1))
    var offset = 0
    while offset < body.count {
        var chunk = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: body[offset..<min(offset + step, body.count)]))
        if !session.consume(&chunk, queueLimit: 100) {
            // The queue filled up: the gateway would stop reading until the drain, then go on.
            repeat { loop.advanceTime(by: .milliseconds(1)) } while !session.resume(queueLimit: 100)
        }
        offset += step
    }
    session.finish()
    session.close()
    loop.advanceTime(by: .milliseconds(1))
    let published = worker.snapshot().lastSeq - before
    precondition(published == UInt64(session.accepted), "accepted \(session.accepted), published \(published)")
    return 0
}

@_cdecl("FuzzIngestLines_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzIngestLines)
}
