// Micro-benchmarks of the gateway's hot path: ns/op and allocations/op.
//   publish            Worker.publish from another thread (the event loop drains concurrently), amortized
//   encode             RecordEncoder.encode of one ~200-byte record into a reused buffer
//   batch-build-64     BatchBuilder: 64 records appended, finished (per record = ÷ 64)
//   ring-append-evict  RingBuffer.append of a 16-record batch into a full ring (evicts one batch each time)
//   frame-build        a WebSocket text-frame header + the batch payload written once (what the gateway
//                      does per batch; ServerFrames is internal to TailgateServer, so this is a replica)
import Benchmark
import NIOCore
import NIOPosix
import TailgateCore

let sample = LogRecord(level: .info, message: "order submitted id=A-10492 LONG 002050.SZ 1000 @ 9.98 limit",
                       loggerName: "TurtleBreakout", module: "strategies.turtlebreakout", funcName: "send_order", lineNo: 212)

func makeBatch(first: UInt64, count: Int) -> Batch {
    var builder = BatchBuilder(firstSeq: first)
    let now = Timestamp.now()
    for _ in 0..<count { builder.append(sample, timestamp: now) }
    return builder.finish()!
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
                                           scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 1_000_000)

    Benchmark("publish") { benchmark in
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bus = LogBus(eventLoopGroup: group)
        let worker = try! bus.register(WorkerID("bench-\(UInt32.random(in: 0...UInt32.max))")!)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(worker.publish(sample)) }
        benchmark.stopMeasurement()
        worker.stop()
        try? await group.shutdownGracefully()
    }

    Benchmark("encode") { benchmark in
        var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
        let now = Timestamp.now()
        var seq: UInt64 = 1
        for _ in benchmark.scaledIterations {
            buffer.clear()
            RecordEncoder.encode(sample, seq: seq, timestamp: now, into: &buffer)
            seq += 1
            blackHole(buffer.readableBytes)
        }
    }

    Benchmark("batch-build-64") { benchmark in
        var first: UInt64 = 1
        for _ in benchmark.scaledIterations {
            blackHole(makeBatch(first: first, count: 64))
            first += 64
        }
    }

    Benchmark("ring-append-evict") { benchmark in
        var ring = RingBuffer(maxRecords: 1024, maxBytes: 8 << 20)
        var next: UInt64 = 1
        let batches = (0..<256).map { i in makeBatch(first: 1 + UInt64(i) * 16, count: 16) }
        for b in batches.prefix(64) { ring.append(b); next = b.lastSeq + 1 }  // ring full: 1024 records
        // Precompute batches with the right seqs outside the measurement.
        var pending = [Batch]()
        pending.reserveCapacity(benchmark.scaledIterations.count)
        for _ in benchmark.scaledIterations { pending.append(makeBatch(first: next, count: 16)); next += 16 }
        benchmark.startMeasurement()
        for b in pending { ring.append(b) }
        benchmark.stopMeasurement()
        blackHole(ring.count)
    }

    Benchmark("frame-build") { benchmark in
        let batch = makeBatch(first: 1, count: 8)
        let allocator = ByteBufferAllocator()
        for _ in benchmark.scaledIterations {
            let payload = batch.payload
            let n = payload.readableBytes
            var frame = allocator.buffer(capacity: n + 10)
            frame.writeInteger(UInt8(0x81))
            if n < 126 { frame.writeInteger(UInt8(n)) }
            else if n < 65536 { frame.writeInteger(UInt8(126)); frame.writeInteger(UInt16(n)) }
            else { frame.writeInteger(UInt8(127)); frame.writeInteger(UInt64(n)) }
            frame.writeImmutableBuffer(payload)
            blackHole(frame)
        }
    }
}
