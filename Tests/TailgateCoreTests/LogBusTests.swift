import Dispatch
import NIOCore
import NIOPosix
import Testing
@testable import TailgateCore

/// Runs `body` with a bus on a one-thread event-loop group, and shuts the group down afterwards.
func withBus<T>(
    _ configuration: BusConfiguration = BusConfiguration(),
    threads: Int = 1,
    _ body: (LogBus, EventLoopGroup) async throws -> T
) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    do {
        let result = try await body(try LogBus(configuration: configuration, eventLoopGroup: group), group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

/// Reads `"message":"T:I"` from an encoded record without a full parse (a debug-build JSON parse of
/// 80,000 records would dominate the test's time).
private func threadAndIndex(_ bytes: ByteBuffer) -> (Int, Int)? {
    bytes.withUnsafeReadableBytes { raw -> (Int, Int)? in
        let needle = Array(#""message":""#.utf8)
        guard raw.count >= needle.count,
              let start = (0...(raw.count - needle.count)).first(where: { at in
                  raw[at] == needle[0] && (1..<needle.count).allSatisfy { raw[at + $0] == needle[$0] }
              }) else { return nil }
        var offset = start + needle.count
        func number(until terminator: UInt8) -> Int? {
            var value = 0
            var digits = 0
            while offset < raw.count, raw[offset] != terminator {
                guard raw[offset] >= 0x30, raw[offset] <= 0x39 else { return nil }
                value = value * 10 + Int(raw[offset] - 0x30)
                digits += 1
                offset += 1
            }
            offset += 1
            return digits > 0 ? value : nil
        }
        guard let thread = number(until: UInt8(ascii: ":")), let index = number(until: UInt8(ascii: "\"")) else { return nil }
        return (thread, index)
    }
}

@Suite("LogBus and Worker", .timeLimit(.minutes(1)))
struct LogBusTests {
    let id = WorkerID("002050.SZ")!

    @Test func registerReturnsARunningWorker() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            #expect(worker.id == id)
            #expect(worker.owner == .inProcess)
            #expect(!worker.isStopping)
            #expect(bus.worker(id) === worker)
            #expect(bus.worker(WorkerID("other")!) == nil)
            let snapshot = worker.snapshot()
            #expect(snapshot.id == id && snapshot.state == .running && snapshot.owner == .inProcess)
            #expect(snapshot.firstSeq == 1 && snapshot.lastSeq == 0)
            #expect(snapshot.ringRecords == 0 && snapshot.ringBytes == 0 && snapshot.subscribers == 0)
            #expect(snapshot.stoppedAt == nil)
            #expect(!snapshot.epoch.isEmpty)
        }
    }

    @Test func registeringARunningIDThrows() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            #expect(throws: BusError.workerAlreadyRunning(id)) { try bus.register(id) }
            let error = #expect(throws: BusError.self) { try bus.register(id) }
            let description = try #require(error).description
            #expect(description == "worker '002050.SZ' is already running; stop it before registering it again")
            // The running worker is untouched.
            #expect(bus.worker(id) === worker)
            #expect(worker.publish(.info, "still here"))
        }
    }

    @Test func registeringAgainAfterStopGivesANewIncarnation() async throws {
        try await withBus { bus, _ in
            let first = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: first)
            #expect(first.publish(.info, "one"))
            #expect(first.publish(.info, "two"))
            first.stop()
            await collector.waitForEnd()
            let second = try bus.register(id)
            #expect(second !== first)
            #expect(second.epoch != first.epoch)
            #expect(bus.worker(id) === second)
            #expect(second.snapshot().state == .running)
            #expect(second.snapshot().lastSeq == 0)
            // Seqs start over for the new incarnation.
            let secondCollector = Collector()
            try await secondCollector.attach(to: second)
            second.publish(.info, "again")
            await secondCollector.wait(forSeq: 1)
            #expect(secondCollector.current.seqs == [1])
            #expect(first.snapshot().lastSeq == 2)
        }
    }

    @Test func allWorkersAreSortedByID() async throws {
        try await withBus { bus, _ in
            for name in ["demo-2", "002050.SZ", "VnpyWorker-7", "demo-10", "demo-1"] {
                _ = try bus.register(WorkerID(name)!)
            }
            #expect(bus.allWorkers().map(\.id.rawValue) == ["002050.SZ", "VnpyWorker-7", "demo-1", "demo-10", "demo-2"])
        }
    }

    @Test func publishesFromManyThreadsGiveEverySeqOnce() async throws {
        let threads = 8
        let perThread = 10_000
        let total = threads * perThread
        let configuration = BusConfiguration(workerLimits: WorkerLimits(ringRecords: 100_000, ringBytes: 256 << 20))
        try await withBus(configuration) { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            let refused = Counter()
            await onThreads(threads) { thread in
                for index in 0..<perThread {
                    if !worker.publish(LogRecord(message: "\(thread):\(index)", loggerName: "t\(thread)", lineNo: index)) {
                        refused.increment()
                    }
                }
            }
            #expect(refused.count == 0)
            await collector.wait(forSeq: UInt64(total))

            // The subscriber saw every seq once, in order, in whole batches.
            let seen = collector.current
            #expect(seen.seqs.count == total)
            #expect(seen.seqs.first == 1 && seen.seqs.last == UInt64(total))
            #expect(zip(seen.seqs, seen.seqs.dropFirst()).allSatisfy { $0 + 1 == $1 })

            // The ring holds exactly 1...total, and each thread's records in the order it published them.
            let (seqs, orderViolations, gaps) = worker.withRing { ring, stoppedAt in
                #expect(stoppedAt == nil)
                #expect(ring.firstSeq == 1 && ring.lastSeq == UInt64(total) && ring.count == total)
                var seqs: [UInt64] = []
                seqs.reserveCapacity(total)
                var nextIndex = [Int](repeating: 0, count: threads)
                var orderViolations = 0
                var gaps = 0
                ring.forEachRecord(from: 1) { seq, bytes in
                    seqs.append(seq)
                    guard let (thread, index) = threadAndIndex(bytes), thread < threads else {
                        orderViolations += 1
                        return true
                    }
                    if index < nextIndex[thread] { orderViolations += 1 }
                    if index > nextIndex[thread] { gaps += 1 }
                    nextIndex[thread] = index + 1
                    return true
                }
                return (seqs, orderViolations, gaps)
            }
            #expect(seqs == Array(1...UInt64(total)))
            #expect(orderViolations == 0)
            #expect(gaps == 0)
            let snapshot = worker.snapshot()
            #expect(snapshot.lastSeq == UInt64(total) && snapshot.ringRecords == total)

            // A sample parsed in full.
            let record = try worker.withRing { ring, _ in try parseJSON(ring.batch(containing: 12_345)!.record(12_345)) }
            #expect(record["seq"]?.intValue == 12_345)
            #expect(record["level"] == .string("INFO"))
        }
    }

    @Test func publishAfterStopReturnsFalse() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            #expect(worker.publish(.info, "before"))
            worker.stop()
            #expect(worker.isStopping)
            #expect(!worker.publish(.info, "after"))
            #expect(!worker.publish(LogRecord(message: "after, too")))
            await collector.waitForEnd()
            #expect(!worker.publish(.info, "long after"))
            #expect(collector.current.seqs == [1])
            #expect(worker.snapshot().lastSeq == 1)
        }
    }

    @Test func stopDeliversEndAfterEveryBatch() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            for index in 0..<1000 { worker.publish(.info, "line \(index)") }
            worker.stop()
            worker.stop()  // stopping twice does nothing
            await collector.waitForEnd()
            let events = collector.current.events
            #expect(events.last == .end)
            #expect(events.filter { $0 == .end }.count == 1)
            #expect(collector.current.seqs == Array(1...1000))
            let snapshot = worker.snapshot()
            #expect(snapshot.state == .stopped)
            #expect(snapshot.stoppedAt != nil)
            #expect(snapshot.lastSeq == 1000)
            // A stopped worker stays readable while it is retained.
            #expect(bus.worker(id) === worker)
            #expect(worker.withRing { ring, stoppedAt in ring.count == 1000 && stoppedAt != nil })
            // Nothing more is delivered after the end.
            try await worker.loop.submit {}.get()
            #expect(collector.current.events.count == events.count)
        }
    }

    @Test func stopWithNothingPublishedStillEnds() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            worker.stop()
            await collector.waitForEnd()
            #expect(collector.current.events == [.end])
            #expect(worker.snapshot().state == .stopped)
        }
    }

    @Test func retentionRemovesAStoppedWorker() async throws {
        let retention = TimeAmount.milliseconds(5)
        try await withBus(BusConfiguration(retention: retention)) { bus, _ in
            let worker = try bus.register(id)
            let other = try bus.register(WorkerID("keeps-running")!)
            let collector = Collector()
            try await collector.attach(to: worker)
            worker.publish(.info, "bye")
            worker.stop()
            await collector.waitForEnd()
            // The removal is scheduled in the same loop tick as the end; once this task has run, it is scheduled.
            try await worker.loop.submit {}.get()
            // Tasks run in deadline order, so once a later one has run the removal has too.
            try await worker.loop.scheduleTask(in: retention + .milliseconds(20)) {}.futureResult.get()
            #expect(bus.worker(id) == nil)
            #expect(bus.allWorkers().map(\.id) == [other.id])
            #expect(bus.worker(other.id) === other)
            // The id is free again.
            let again = try bus.register(id)
            #expect(bus.worker(id) === again)
        }
    }

    @Test func retentionDoesNotRemoveANewIncarnation() async throws {
        let retention = TimeAmount.milliseconds(5)
        try await withBus(BusConfiguration(retention: retention)) { bus, _ in
            let first = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: first)
            first.stop()
            await collector.waitForEnd()
            let second = try bus.register(id)
            try await first.loop.submit {}.get()
            try await first.loop.scheduleTask(in: retention + .milliseconds(20)) {}.futureResult.get()
            #expect(bus.worker(id) === second)
        }
    }

    @Test func remoteWorkers() async throws {
        try await withBus { bus, _ in
            // An in-process worker's id is refused to remote publishers.
            let local = try bus.register(id)
            #expect(throws: BusError.ownedByOther(id, .inProcess)) { try bus.remoteWorker(id) }
            let error = #expect(throws: BusError.self) { try bus.remoteWorker(id) }
            #expect(error?.description == "worker '002050.SZ' is published by an in-process publisher")
            #expect(bus.worker(id) === local)

            // A remote worker is created on first use and then shared.
            let remoteID = WorkerID("py-strategy")!
            let remote = try bus.remoteWorker(remoteID)
            #expect(remote.owner == .remote)
            #expect(try bus.remoteWorker(remoteID) === remote)
            #expect(throws: BusError.workerAlreadyRunning(remoteID)) { try bus.register(remoteID) }

            // Once the in-process worker stopped, a remote publisher may take the id over.
            let collector = Collector()
            try await collector.attach(to: local)
            local.stop()
            await collector.waitForEnd()
            let takenOver = try bus.remoteWorker(id)
            #expect(takenOver !== local && takenOver.owner == .remote)
        }
    }

    @Test func ringOverflowBetweenDrainsJumpsAhead() async throws {
        // The queue holds 20,000 records at least (`WorkerLimits.queuedRecords`): 20,250 records while
        // the loop is held overflow it by 250.
        let configuration = BusConfiguration(workerLimits: WorkerLimits(ringRecords: 100))
        #expect(configuration.workerLimits.queuedRecords == 20_000)
        try await withBus(configuration) { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            for index in 1...10 { worker.publish(.info, "early \(index)") }
            await collector.wait(forSeq: 10)
            #expect(collector.current.seqs == Array(1...10))
            let eventsBefore = collector.current.events.count

            // Hold the loop while far more than the ring's size is published.
            let gate = DispatchSemaphore(value: 0)
            let blocked = DispatchSemaphore(value: 0)
            worker.loop.execute {
                blocked.signal()
                gate.wait()
            }
            blocked.wait()
            for index in 11...20_260 {
                #expect(worker.publish(.info, "late \(index)"), "publish never blocks nor fails")
            }
            gate.signal()
            await collector.wait(forSeq: 20_260)

            let events = collector.current.events
            // The next batch starts with the oldest record that still fits in the ring.
            guard case .batch(let first, _)? = events.dropFirst(eventsBefore).first else {
                Issue.record("no second batch: \(events)")
                return
            }
            #expect(first == 261)
            #expect(collector.current.seqs == Array(1...10) + Array(261...20_260))
            let held = worker.withRing { ring, _ -> [UInt64] in
                #expect(ring.firstSeq == 20_161 && ring.lastSeq == 20_260 && ring.count == 100)
                var seqs: [UInt64] = []
                ring.forEachRecord(from: 0) { seq, bytes in
                    if (try? parseJSON(bytes))?["message"] == .string("late \(seq)") { seqs.append(seq) }
                    return true
                }
                return seqs
            }
            #expect(held == Array(20_161...20_260))
            let snapshot = worker.snapshot()
            #expect(snapshot.firstSeq == 20_161 && snapshot.lastSeq == 20_260 && snapshot.ringRecords == 100)
            #expect(snapshot.droppedBeforeRing == 250)

            // Readers are told what they lost.
            guard case .gap(let from, let to) = worker.read(at: 1) else {
                Issue.record("expected a gap")
                return
            }
            #expect(from == 1 && to == 20_160)
        }
    }

    @Test func readPositions() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            for index in 1...5 { worker.publish(.info, "r\(index)") }
            await collector.wait(forSeq: 5)
            guard case .batch(let batch) = worker.read(at: 3) else {
                Issue.record("expected a batch")
                return
            }
            #expect(batch.firstSeq <= 3 && 3 <= batch.lastSeq)
            guard case .caughtUp(let ended) = worker.read(at: 6) else {
                Issue.record("expected caught up")
                return
            }
            #expect(!ended)
            worker.stop()
            await collector.waitForEnd()
            guard case .caughtUp(let endedNow) = worker.read(at: 6) else {
                Issue.record("expected caught up")
                return
            }
            #expect(endedNow)
        }
    }

    @Test func recordsKeepTheirFieldsAndTimestamps() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            let before = Timestamp.now()
            worker.publish(.error, "boom", loggerName: "oms", module: "orders", funcName: "send", lineNo: 77, metadata: ["order": "42"])
            worker.publish(LogRecord(message: "stamped", timestamp: Timestamp(microseconds: 0)))
            await collector.wait(forSeq: 2)
            let after = Timestamp.now()
            let (first, second) = try worker.withRing { ring, _ in
                (try parseJSON(ring.batch(containing: 1)!.record(1)), try parseJSON(ring.batch(containing: 2)!.record(2)))
            }
            #expect(first == .object([
                "seq": .number(1), "timestamp": first["timestamp"]!, "level": .string("ERROR"), "message": .string("boom"),
                "logger_name": .string("oms"), "module": .string("orders"), "func_name": .string("send"),
                "line_no": .number(77), "metadata": .object(["order": .string("42")]),
            ]))
            let stamped = try #require(first["timestamp"]?.stringValue.flatMap { Timestamp(iso8601: $0) })
            #expect(before <= stamped && stamped <= after)
            #expect(second["timestamp"] == .string("1970-01-01T00:00:00.000000Z"))
        }
    }

    @Test func subscribersSharingARenderingShareOneRendering() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let plainCalls = Counter()
            let otherCalls = Counter()
            let plain = CountingRendering(key: 1, calls: plainCalls)
            let a = Collector(), b = Collector(), c = Collector()
            try await a.attach(to: worker, rendering: plain)
            try await b.attach(to: worker, rendering: plain)
            try await c.attach(to: worker, rendering: CountingRendering(key: 2, calls: otherCalls))
            #expect(worker.fanOut.subscriberCount == 3)
            #expect(worker.snapshot().subscribers == 3)
            worker.publish(.info, "x")
            await a.wait(forSeq: 1)
            await b.wait(forSeq: 1)
            await c.wait(forSeq: 1)
            #expect(plainCalls.count == 1)
            #expect(otherCalls.count == 1)
            #expect(a.current.rendered == b.current.rendered)
            #expect(String(buffer: a.current.rendered[0]).hasPrefix("r1:{\"type\":\"logs\""))
            #expect(String(buffer: c.current.rendered[0]).hasPrefix("r2:{\"type\":\"logs\""))

            // A removed subscriber gets nothing more.
            let loop = worker.loop
            try await loop.submit { worker.fanOut.remove(b, on: loop) }.get()
            try await loop.submit { worker.fanOut.remove(b, on: loop) }.get()  // twice: no effect
            #expect(worker.fanOut.subscriberCount == 2)
            worker.publish(.info, "y")
            await a.wait(forSeq: 2)
            try await loop.submit {}.get()
            #expect(b.current.seqs == [1])
            #expect(c.current.seqs == [1, 2])
        }
    }

    @Test func stopRacingWithPublishersLosesNothingThatWasAccepted() async throws {
        let threads = 4
        let perThread = 2000
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collector = Collector()
            try await collector.attach(to: worker)
            let accepted = Counter()
            let resumedAfterRefusal = Counter()
            await onThreads(threads) { thread in
                var refused = false
                for index in 0..<perThread {
                    if thread == 0 && index == perThread / 4 { worker.stop() }
                    if worker.publish(.info, "\(thread):\(index)") {
                        accepted.increment()
                        if refused { resumedAfterRefusal.increment() }
                    } else {
                        refused = true
                    }
                }
            }
            await collector.waitForEnd()
            #expect(resumedAfterRefusal.count == 0, "once refused, always refused")
            #expect(accepted.count >= perThread / 4)
            #expect(accepted.count < threads * perThread)
            // Every accepted record was delivered, before the end, and nothing else.
            let seen = collector.current
            #expect(seen.events.last == .end)
            #expect(seen.seqs == Array(1...UInt64(accepted.count)))
            #expect(worker.snapshot().lastSeq == UInt64(accepted.count))
        }
    }

    @Test func subscribersOnAnotherLoopGetEverythingOnTheirLoop() async throws {
        try await withBus(threads: 2) { bus, group in
            let worker = try bus.register(id)
            let otherLoop = try #require(group.makeIterator().first { $0 !== worker.loop })
            let here = Collector(loop: worker.loop)
            let there = Collector(loop: otherLoop)
            try await here.attach(to: worker)
            try await there.attach(to: worker)
            for index in 0..<3000 { worker.publish(.info, "line \(index)") }
            worker.stop()
            await here.waitForEnd()
            await there.waitForEnd()
            #expect(here.current.seqs == Array(1...3000))
            #expect(there.current.seqs == Array(1...3000))
            #expect(here.current.events == there.current.events)
            #expect(there.current.events.last == .end)
            #expect(here.offLoopCalls == 0)
            #expect(there.offLoopCalls == 0)
        }
    }
}

@Suite("Drain sweeps and the loop's ticks")
struct DrainTickTests {
    /// A bus whose sweeps are 30 s apart at least, on a group whose ticks are counted or not.
    private func withSlowSweeps(countTicks: Bool, _ body: (LogBus, EventLoop) async throws -> Void) async throws {
        let ticks = LoopTicks()
        let group = countTicks
            ? MultiThreadedEventLoopGroup(numberOfThreads: 1, metricsDelegate: TickForwarder(ticks: ticks))
            : MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let configuration = BusConfiguration(workerLimits: WorkerLimits(minimumDrainInterval: .seconds(30)))
        let bus = try LogBus(configuration: configuration, eventLoopGroup: group, loopTicks: countTicks ? ticks : nil)
        do {
            try await body(bus, group.next())
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func waitForLastSeq(_ worker: Worker, _ seq: UInt64, within seconds: Double) async throws -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            if worker.snapshot().lastSeq >= seq { return true }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        return worker.snapshot().lastSeq >= seq
    }

    @Test("once the loop has finished the last sweep's tick, the next drain starts at once, whatever the minimum interval")
    func countedTicksLetTheNextSweepStartAtOnce() async throws {
        try await withSlowSweeps(countTicks: true) { bus, loop in
            let worker = try bus.register(WorkerID("ticks")!)
            _ = worker.publish(LogRecord(message: "first"))
            #expect(try await waitForLastSeq(worker, 1, within: 10))
            // Two tasks, two ticks: the loop has polled its sockets since the sweep.
            try await loop.submit {}.get()
            try await loop.submit {}.get()
            _ = worker.publish(LogRecord(message: "second"))
            #expect(try await waitForLastSeq(worker, 2, within: 10), "drained long before the 30 s interval")
        }
    }

    @Test("without counted ticks, the next sweep waits for the minimum interval")
    func uncountedTicksKeepTheInterval() async throws {
        try await withSlowSweeps(countTicks: false) { bus, loop in
            let worker = try bus.register(WorkerID("interval")!)
            _ = worker.publish(LogRecord(message: "first"))
            #expect(try await waitForLastSeq(worker, 1, within: 10))
            try await loop.submit {}.get()
            _ = worker.publish(LogRecord(message: "second"))
            #expect(try await waitForLastSeq(worker, 2, within: 0.5) == false, "held back by the 30 s interval")
        }
    }
}

/// The group's metrics delegate in these tests: forwards each tick's end to `LoopTicks`.
private struct TickForwarder: NIOEventLoopMetricsDelegate {
    let ticks: LoopTicks
    func processedTick(info: NIOEventLoopTickInfo) { ticks.tickEnded(loop: info.eventLoopID) }
}
