#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Testing
import TailgateCore
@testable import TailgateServer

extension GatewayIntegrationTests {
    /// Live batches written straight to the socket (`StreamWriter`, `DirectSocketWriter`), over real
    /// loopback sockets.
    @Suite("Direct writes of live batches")
    struct DirectWrites {
        /// Publishes `count` records one live batch at a time (each waits for the ring), so that a
        /// subscriber at the head gets `count` live writes.
        static func settle(_ worker: Worker, count: Int, from first: UInt64) async throws {
            for index in 0..<UInt64(count) {
                worker.publish(.info, "settling \(first + index)")
                try await waitForRing(worker, lastSeq: first + index)
            }
        }

        @Test("a stream that has had its live writes through NIO writes the next ones straight to its socket; every record arrives once, in order")
        func settledStreamWritesDirectly() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("direct")
                let client = try await gateway.subscribe("/ws/workers/direct?tail=0")
                var transcript = StreamTranscript(hello: try await client.nextMessage(), keepRecords: false)
                let settling = StreamWriter.liveWritesBeforeDirect + 8
                try await Self.settle(worker, count: settling, from: 1)
                try await transcript.read(client, through: UInt64(settling))
                #expect(gateway.statistics.streamsWritingDirectly.load(ordering: .relaxed) == 1)

                publish(20_000, to: worker, prefix: "direct")
                try await transcript.read(client, through: UInt64(settling + 20_000), timeout: .seconds(30))
                #expect(transcript.recordCount == settling + 20_000)
                #expect(transcript.gaps.isEmpty)
                #expect(transcript.violations.isEmpty, "\(transcript.violations.prefix(5))")
            }
        }

        @Test("--no-direct-writes: every write takes NIO's path and the stream is the same")
        func directWritesOff() async throws {
            try await withGateway(configure: { $0.directWrites = false }) { gateway in
                let worker = try gateway.register("through-nio")
                let client = try await gateway.subscribe("/ws/workers/through-nio?tail=0")
                var transcript = StreamTranscript(hello: try await client.nextMessage(), keepRecords: false)
                let settling = StreamWriter.liveWritesBeforeDirect + 8
                try await Self.settle(worker, count: settling, from: 1)
                publish(2_000, to: worker)
                try await transcript.read(client, through: UInt64(settling + 2_000))
                #expect(gateway.statistics.streamsWritingDirectly.load(ordering: .relaxed) == 0)
                #expect(transcript.recordCount == settling + 2_000)
                #expect(transcript.violations.isEmpty, "\(transcript.violations.prefix(5))")
            }
        }

        @Test("a reader that stops: the kernel takes a direct write in part, the rest and the live batches after it queue in NIO; the reader then gets every record in order, then end")
        func partialDirectWrites() async throws {
            try await withGateway(configure: {
                $0.writeBufferHighWatermark = 64 * 1024
                $0.writeBufferLowWatermark = 16 * 1024
            }) { gateway in
                let worker = try gateway.register("slow-direct")
                let slow = try await gateway.rawStream("/ws/workers/slow-direct?tail=0", receiveBufferSize: 16 * 1024)
                var transcript = StreamTranscript(hello: try await readHello(slow), keepRecords: false)
                let settling = StreamWriter.liveWritesBeforeDirect + 8
                try await Self.settle(worker, count: settling, from: 1)
                while transcript.lastCovered < UInt64(settling) {
                    let frame = try #require(try await slow.readFrame())
                    _ = try transcript.observe(frame: frame)
                }
                #expect(gateway.statistics.streamsWritingDirectly.load(ordering: .relaxed) == 1)

                // The reader stops; batches of 1 KiB records go on, one live batch at a time, until the
                // kernel's buffers are full and a direct write is taken in part (its rest queued in NIO).
                try await slow.setAutoRead(false)
                let line = String(repeating: "x", count: 1_000)
                var published = UInt64(settling)
                while gateway.statistics.directWritesCutShort.load(ordering: .relaxed) == 0 && published < 100_000 {
                    for _ in 0..<20 { worker.publish(.info, line) }
                    published += 20
                    try await waitForRing(worker, lastSeq: published)
                }
                // More while NIO holds the rest (live batches queue behind it), then the reader reads
                // everything, a frame at a time with pauses.
                for _ in 0..<50 {
                    for _ in 0..<4 { worker.publish(.info, line) }
                    published += 4
                    try await waitForRing(worker, lastSeq: published)
                }
                worker.stop()
                try await slow.setAutoRead(true)
                var read = transcript
                var frames = 0
                while let frame = try await slow.readFrame(timeout: .seconds(30)) {
                    guard try read.observe(frame: frame) else { break }
                    frames += 1
                    if frames % 16 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                }
                await slow.close()
                #expect(gateway.statistics.directWritesCutShort.load(ordering: .relaxed) > 0, "the kernel never took a direct write in part")
                #expect(read.end != nil, "the stream ends with end")
                #expect(read.lastCovered == published)
                #expect(read.violations.isEmpty, "\(read.violations.prefix(5))")
            }
        }

        @Test("a /ws/streams socket writes its live batches directly too")
        func multiplexWritesDirectly() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("mux-direct")
                let client = try await gateway.subscribe("/ws/streams?workers=mux-direct&tail=0")
                var transcripts = WorkerTranscripts()
                transcripts.observe(try await client.nextMessage())
                let settling = StreamWriter.liveWritesBeforeDirect + 8
                try await Self.settle(worker, count: settling, from: 1)
                publish(5_000, to: worker)
                worker.stop()
                while transcripts.transcripts["mux-direct"]?.end == nil {
                    transcripts.observe(try await client.nextMessage())
                }
                #expect(gateway.statistics.streamsWritingDirectly.load(ordering: .relaxed) == 1)
                #expect(transcripts.transcripts["mux-direct"]?.lastCovered == UInt64(settling + 5_000))
                #expect(transcripts.allViolations.isEmpty, "\(transcripts.allViolations.prefix(5))")
            }
        }
    }
}

/// The rule that keeps bytes in order: no direct write while NIO holds a write of the stream.
@Suite("StreamWriter: direct writes wait for NIO's queue")
struct StreamWriterOrderTests {
    @Test("a counted NIO write holds direct writes back until it completes; with direct writes off nothing is counted")
    func nioWritesHoldDirectWritesBack() {
        var writer = StreamWriter(direct: DirectSocketWriter(descriptor: 1_000_000))
        #expect(writer.directNow != nil)
        let first = writer.nioWriteStarts()
        let second = writer.nioWriteStarts()
        #expect(first && second, "writes are counted once the stream writes directly")
        #expect(writer.directNow == nil)
        writer.nioWriteEnded()
        #expect(writer.directNow == nil, "one NIO write is still queued")
        writer.nioWriteEnded()
        #expect(writer.directNow != nil)

        var off = StreamWriter(directWrites: false)
        let counted = off.nioWriteStarts()
        #expect(!counted)
        #expect(off.directNow == nil)
    }

    @Test("the kernel takes a write in part: the outcome says how much")
    func partialSend() throws {
        var sockets: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sockets) == 0)
        defer { close(sockets[0]); close(sockets[1]) }
        _ = fcntl(sockets[0], F_SETFL, fcntl(sockets[0], F_GETFL) | O_NONBLOCK)
        let writer = DirectSocketWriter(descriptor: sockets[0])
        let bytes = ByteBuffer(repeating: 0x61, count: 64 * 1024)
        var whole = 0
        var cut: Int?
        for _ in 0..<1_000 {
            switch writer.write(bytes) {
            case .whole: whole += 1
            case .partial(let sent): cut = sent
            }
            if cut != nil { break }
        }
        let sent = try #require(cut, "the socket never filled up")
        #expect(sent < bytes.readableBytes)
        #expect(whole > 0)
        // Full now: nothing goes, and it says so (EAGAIN is not an error to the stream).
        guard case .partial(0) = writer.write(bytes) else {
            Issue.record("a write into a full socket was not reported as taking 0 bytes")
            return
        }
    }
}

