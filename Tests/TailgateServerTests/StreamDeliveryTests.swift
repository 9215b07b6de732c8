import NIOCore
import Testing
import TailgateCore
import TailgateServer

extension GatewayIntegrationTests {
    @Suite("Stream delivery: hello, replay, gap, live, end")
    struct StreamDelivery {
        @Test("hello carries worker, state, first_seq, last_seq, replay_from and server_time; tail=N replays the newest N")
        func helloAndTail() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("002050.SZ")
                publish(5, to: worker)
                try await waitForRing(worker, lastSeq: 5)
                let before = Timestamp.now()
                let client = try await gateway.subscribe("/ws/workers/002050.SZ?tail=2")
                let hello = try await client.nextMessage()
                #expect(hello["type"] == .string("hello"))
                #expect(hello["worker"] == .string("002050.SZ"))
                #expect(hello["state"] == .string("running"))
                #expect(hello["first_seq"]?.seq == 1)
                #expect(hello["last_seq"]?.seq == 5)
                #expect(hello["replay_from"]?.seq == 4)
                let serverTime = try #require(hello["server_time"]?.stringValue)
                let parsed = try #require(Timestamp(iso8601: serverTime), "server_time \(serverTime) is not ISO-8601")
                #expect(serverTime.hasSuffix("Z"))
                #expect(parsed.microseconds >= before.microseconds - 1_000_000)
                #expect(parsed.microseconds <= Timestamp.now().microseconds + 1_000_000)

                var transcript = StreamTranscript(hello: hello)
                try await transcript.read(client, through: 5)
                #expect(transcript.seqs == [4, 5])
                let record = try #require(transcript.records.first)
                #expect(record["message"] == .string("record 4"))
                #expect(record["level"] == .string("INFO"))
                #expect(record["logger_name"] == .string("test"))
                #expect(record["module"] == .string("tests"))
                #expect(record["func_name"] == .string("publish"))
                #expect(record["line_no"]?.intValue == 4)
                let timestamp = try #require(record["timestamp"]?.stringValue)
                #expect(timestamp.utf8.count == 27 && timestamp.hasSuffix("Z"), "\(timestamp)")

                // Live records follow the replay without a hole.
                publish(3, to: worker, prefix: "live")
                try await transcript.read(client, through: 8)
                #expect(transcript.seqs == [4, 5, 6, 7, 8])
                #expect(transcript.records.last?["message"] == .string("live 3"))
                #expect(transcript.violations.isEmpty, "\(transcript.violations)")
            }
        }

        @Test("tail larger than the ring replays everything; the default tail applies without parameters")
        func tailBounds() async throws {
            try await withGateway(configure: { $0.defaultTail = 3 }) { gateway in
                let worker = try gateway.register("w")
                publish(10, to: worker)
                try await waitForRing(worker, lastSeq: 10)

                let all = try await gateway.subscribe("/ws/workers/w?tail=1000")
                var everything = StreamTranscript(hello: try await all.nextMessage())
                #expect(everything.replayFrom == 1)
                try await everything.read(all, through: 10)
                #expect(everything.seqs == Array(1...10))

                let byDefault = try await gateway.subscribe("/ws/workers/w")
                var defaulted = StreamTranscript(hello: try await byDefault.nextMessage())
                #expect(defaulted.replayFrom == 8)
                try await defaulted.read(byDefault, through: 10)
                #expect(defaulted.seqs == [8, 9, 10])
                #expect(everything.violations.isEmpty && defaulted.violations.isEmpty)
            }
        }

        @Test("tail=0 gives live records only")
        func liveOnly() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w")
                publish(20, to: worker)
                try await waitForRing(worker, lastSeq: 20)
                let client = try await gateway.subscribe("/ws/workers/w?tail=0")
                var transcript = StreamTranscript(hello: try await client.nextMessage())
                #expect(transcript.hello["last_seq"]?.seq == 20)
                #expect(transcript.replayFrom == 21)
                worker.publish(.warning, "first live")
                try await transcript.read(client, through: 21)
                #expect(transcript.seqs == [21])
                #expect(transcript.records.first?["message"] == .string("first live"))
                #expect(transcript.records.first?["level"] == .string("WARNING"))
                #expect(transcript.violations.isEmpty, "\(transcript.violations)")
            }
        }

        @Test("since=S delivers every record after S, and since takes precedence over tail")
        func since() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w")
                publish(10, to: worker)
                try await waitForRing(worker, lastSeq: 10)
                let client = try await gateway.subscribe("/ws/workers/w?since=6&tail=1")
                var transcript = StreamTranscript(hello: try await client.nextMessage())
                #expect(transcript.replayFrom == 7)
                try await transcript.read(client, through: 10)
                #expect(transcript.seqs == [7, 8, 9, 10])
                #expect(transcript.gaps.isEmpty)

                // A since beyond the newest seq (another incarnation) starts live.
                let ahead = try await gateway.subscribe("/ws/workers/w?since=500")
                var live = StreamTranscript(hello: try await ahead.nextMessage())
                #expect(live.replayFrom == 11)
                worker.publish(.info, "eleven")
                try await live.read(ahead, through: 11)
                #expect(live.seqs == [11])

                // since=0 is everything.
                let fromStart = try await gateway.subscribe("/ws/workers/w?since=0")
                var start = StreamTranscript(hello: try await fromStart.nextMessage())
                #expect(start.replayFrom == 1)
                try await start.read(fromStart, through: 11)
                #expect(start.seqs == Array(1...11))
                #expect(transcript.violations.isEmpty && live.violations.isEmpty && start.violations.isEmpty)
            }
        }

        @Test("a since older than the ring gives a gap (from, to, reason evicted) in seq position, then the ring")
        func gapWhenEvicted() async throws {
            let bus = BusConfiguration(workerLimits: WorkerLimits(ringRecords: 10))
            try await withGateway(bus: bus) { gateway in
                let worker = try gateway.register("w")
                publish(50, to: worker)
                try await waitForRing(worker, lastSeq: 50)
                let client = try await gateway.subscribe("/ws/workers/w?since=5")
                let hello = try await client.nextMessage()
                #expect(hello["first_seq"]?.seq == 41)
                #expect(hello["last_seq"]?.seq == 50)
                #expect(hello["replay_from"]?.seq == 6)
                let gap = try await client.nextMessage()
                #expect(gap["type"] == .string("gap"))
                #expect(gap["from"]?.seq == 6)
                #expect(gap["to"]?.seq == 40)
                #expect(gap["reason"] == .string("evicted"))
                var transcript = StreamTranscript(hello: hello)
                transcript.observe(gap)
                try await transcript.read(client, through: 50)
                #expect(transcript.seqs == Array(41...50))
                #expect(transcript.violations.isEmpty, "\(transcript.violations)")
                #expect(gateway.statistics.gaps.load(ordering: .relaxed) >= 1)

                // The REST API agrees on the ring's bounds.
                let info = try await gateway.get("/api/workers/w").json()
                #expect(info["first_seq"]?.seq == 41)
                #expect(info["last_seq"]?.seq == 50)
            }
        }

        @Test("live records, then end and close 1000 when the worker stops")
        func liveThenEnd() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("VnpyWorker-7")
                let client = try await gateway.subscribe("/ws/workers/VnpyWorker-7")
                var transcript = StreamTranscript(hello: try await client.nextMessage())
                #expect(transcript.replayFrom == 1)
                #expect(transcript.hello["last_seq"]?.seq == 0)
                for round in 1...5 {
                    publish(round * 10, to: worker, prefix: "round \(round)")
                    try await transcript.read(client, through: UInt64(5 * round * (round + 1)))
                }
                #expect(transcript.recordCount == 150)
                worker.publish(.error, "last words", metadata: ["order": "42", "side": "buy"])
                worker.stop()
                #expect(worker.publish(.info, "after stop") == false)
                try await transcript.readToEnd(client)
                #expect(transcript.records.last?["message"] == .string("last words"))
                #expect(transcript.records.last?["metadata"] == .object(["order": .string("42"), "side": .string("buy")]))
                let end = try #require(transcript.end)
                #expect(end["worker"] == .string("VnpyWorker-7"))
                #expect(end["last_seq"]?.seq == 151)
                #expect(end["reason"] == .string("worker stopped"))
                #expect(transcript.closeCode == 1000)
                #expect(transcript.violations.isEmpty, "\(transcript.violations)")
            }
        }

        @Test("a stopped worker still retained gives hello(state stopped), its replay, end, close 1000")
        func stoppedWorker() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("done")
                publish(5, to: worker)
                worker.stop()
                try await waitUntil("the worker to stop") { worker.snapshot().state == .stopped }
                let client = try await gateway.subscribe("/ws/workers/done?tail=100")
                var transcript = StreamTranscript(hello: try await client.nextMessage())
                #expect(transcript.hello["state"] == .string("stopped"))
                #expect(transcript.hello["last_seq"]?.seq == 5)
                try await transcript.readToEnd(client)
                #expect(transcript.seqs == [1, 2, 3, 4, 5])
                #expect(transcript.end?["last_seq"]?.seq == 5)
                #expect(transcript.closeCode == 1000)
                #expect(transcript.violations.isEmpty, "\(transcript.violations)")

                // tail=0 on a stopped worker: nothing to replay, straight to end.
                let empty = try await gateway.subscribe("/ws/workers/done?tail=0")
                var nothing = StreamTranscript(hello: try await empty.nextMessage())
                try await nothing.readToEnd(empty)
                #expect(nothing.recordCount == 0)
                #expect(nothing.end?["last_seq"]?.seq == 5)
                #expect(nothing.closeCode == 1000)
            }
        }

        @Test("several workers stream on their own paths at once")
        func severalWorkers() async throws {
            try await withGateway(serverThreads: 2) { gateway in
                let ids = ["alpha", "beta", "gamma.1", "delta:2"]
                let workers = try ids.map { try gateway.register($0) }
                var clients: [WebSocketTestClient] = []
                var transcripts: [StreamTranscript] = []
                for id in ids {
                    for _ in 0..<2 {
                        let client = try await gateway.subscribe("/ws/workers/\(id)?tail=0")
                        transcripts.append(StreamTranscript(hello: try await client.nextMessage()))
                        clients.append(client)
                    }
                }
                for round in 1...20 {
                    for (index, worker) in workers.enumerated() {
                        worker.publish(.info, "\(ids[index]) \(round)")
                    }
                }
                for worker in workers { worker.stop() }
                for index in clients.indices {
                    try await transcripts[index].readToEnd(clients[index])
                    let id = ids[index / 2]
                    #expect(transcripts[index].hello["worker"] == .string(id))
                    #expect(transcripts[index].seqs == Array(1...20))
                    #expect(transcripts[index].records.allSatisfy { $0["message"]?.stringValue?.hasPrefix(id + " ") == true })
                    #expect(transcripts[index].closeCode == 1000)
                    #expect(transcripts[index].violations.isEmpty, "\(transcripts[index].violations)")
                }
            }
        }

        @Test("a ping from the client is answered with a pong carrying the same payload")
        func pingPong() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("w")
                let client = try await gateway.subscribe("/ws/workers/w")
                _ = try await client.nextMessage()
                try await client.send(.ping, ByteBuffer(string: "are you there? 12345"))
                var pong: ByteBuffer?
                while pong == nil, let event = try await client.nextEvent() {
                    if case .pong(let payload) = event { pong = payload }
                }
                #expect(pong.map { String(buffer: $0) } == "are you there? 12345")
                // An empty ping too.
                try await client.send(.ping, ByteBuffer())
                var emptyPong: ByteBuffer?
                while emptyPong == nil, let event = try await client.nextEvent() {
                    if case .pong(let payload) = event { emptyPong = payload }
                }
                #expect(emptyPong?.readableBytes == 0)
            }
        }

        @Test("a client that closes gets the close echoed and its subscriber place back")
        func clientClose() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w")
                let client = try await gateway.subscribe("/ws/workers/w")
                _ = try await client.nextMessage()
                #expect(worker.fanOut.subscriberCount == 1)
                try await client.sendClose(code: 1000)
                #expect(try await client.closeCode() == .some(1000))
                try await client.waitUntilClosed()
                try await waitUntil("the subscriber to be detached") { worker.fanOut.subscriberCount == 0 }
            }
        }
    }
}

