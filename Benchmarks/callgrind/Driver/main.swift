// Instruction-count driver (run under callgrind): HTTP-ingest-like decode + enqueue + drain, and a
// fan-out round to in-process subscribers, on an EmbeddedEventLoop (no threads, no sockets).
// Usage: Driver RECORDS SUBSCRIBERS
import NIOCore
import NIOEmbedded
import TailgateCore
#if canImport(Glibc)
import Glibc
#endif

final class Sink: BatchSubscriber {
    var nextSeq: UInt64 = 1
    var bytes = 0
    func offer(_ batch: Batch, rendered: ByteBuffer) {
        bytes &+= rendered.readableBytes
        nextSeq = batch.lastSeq + 1
    }
    func workerEnded() {}
}

struct Plain: BatchRendering {
    var key: Int { 0 }
    func render(_ batch: Batch) -> ByteBuffer { batch.payload }
}

let args = CommandLine.arguments
let total = args.count > 1 ? Int(args[1])! : 100_000
let subscriberCount = args.count > 2 ? Int(args[2])! : 0

let loop = EmbeddedEventLoop()
let bus = LogBus(eventLoopGroup: loop)
let worker = try! bus.remoteWorker(WorkerID("ing")!)
var sinks: [Sink] = []
for _ in 0..<subscriberCount {
    let sink = Sink()
    worker.fanOut.add(sink, rendering: Plain(), on: loop)
    sinks.append(sink)
}

let messages = ["order submitted id=A-10492 LONG 002050.SZ 1000 @ 9.98 limit", "position update 002050.SZ qty=1000 avg=9.98",
                "risk check passed exposure=0.42 limit=0.80", "heartbeat from broker session 7 latency_ms=3"]
let levels = ["INFO", "DEBUG", "WARNING", "INFO"]
let funcs = ["send_order", "on_fill", "check_risk", "on_heartbeat"]
var lines: [[UInt8]] = []
for k in 0..<256 {
    let line = "{\"timestamp\":\"2026-11-30T08:00:00.123456Z\",\"level\":\"\(levels[k % 4])\",\"message\":\"\(messages[k % 4]) #\(k)\",\"logger_name\":\"TurtleBreakout\",\"module\":\"strategies.turtlebreakout\",\"func_name\":\"\(funcs[k % 4])\",\"line_no\":\(200 + k % 4)}"
    lines.append(Array(line.utf8))
}

// Mode "session": the same lines through IngestSession (TailgateServer's ingest path, copied into this
// module), in 64 KiB reads, draining once per read.
// (A function, so that its state is locals: top-level variables are globals, whose accesses are
// checked for exclusivity at run time and would be counted too.)
func runSession(total: Int, lines: [[UInt8]], worker: Worker, loop: EmbeddedEventLoop) {
    var body = ByteBufferAllocator().buffer(capacity: 70_000)
    let statistics = GatewayStatistics()
    let session = IngestSession(worker: worker, format: .ndjson, maxLineBytes: 1 << 20, statistics: statistics)
    var sent = 0
    while sent < total {
        body.clear()
        while sent < total && body.readableBytes < 65_000 {
            body.writeBytes(lines[sent & 255]); body.writeInteger(UInt8(0x0A)); sent += 1
        }
        var read = body
        _ = session.consume(&read, queueLimit: Int.max)
        loop.run()
    }
    session.finish()
    loop.run()
    print("session records \(sent) accepted \(session.accepted) rejected \(session.rejected) lastSeq \(worker.lastPublishedSeq)")
}
if args.count > 3 && args[3] == "session" {
    runSession(total: total, lines: lines, worker: worker, loop: loop)
    exit(0)
}

var repeated = RecordDecoder.RepeatedValues()
var records: [LogRecord] = []
records.reserveCapacity(64)
var done = 0
var rejected = 0
while done < total {
    // One tick: 1,024 lines decoded and enqueued 64 at a time (as IngestSession does), then the drain.
    var tick = 0
    while tick < 1024 && done < total {
        let line = lines[done & 255]
        line.withUnsafeBufferPointer { pointer in
            do { records.append(try RecordDecoder.decodeJSONLine(pointer, reusing: &repeated)) } catch { rejected += 1 }
        }
        done += 1
        tick += 1
        if records.count == 64 { _ = worker.enqueue(contentsOf: &records); records.removeAll(keepingCapacity: true) }
    }
    if !records.isEmpty { _ = worker.enqueue(contentsOf: &records); records.removeAll(keepingCapacity: true) }
    loop.run()
    // A round that yielded (turn budget) goes on after its pause.
    var guardCount = 0
    while sinks.contains(where: { $0.nextSeq <= worker.lastPublishedSeq }) && guardCount < 10_000 {
        loop.advanceTime(by: .milliseconds(1))
        guardCount += 1
    }
}
loop.advanceTime(by: .seconds(1))
let delivered = sinks.reduce(0) { $0 + Int($1.nextSeq - 1) }
print("records \(done) rejected \(rejected) lastSeq \(worker.lastPublishedSeq) delivered \(delivered)")
