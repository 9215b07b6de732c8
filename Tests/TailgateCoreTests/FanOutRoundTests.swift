import NIOCore
import Testing
@testable import TailgateCore

/// Delivery rounds (`LoopSubscribers`): a round over many slow subscribers yields the loop, batches
/// that arrive during a round join it, and subscribers that come and go mid-round miss nothing and
/// get nothing twice.
@Suite("Fan-out delivery rounds", .timeLimit(.minutes(1)))
struct FanOutRoundTests {
    let id = WorkerID("rounds")!

    /// Publishes `count` records, one every `spacing`.
    private func publish(_ count: Int, into worker: Worker, spacing: Duration) async throws {
        for index in 1...count {
            worker.publish(.info, "r\(index)")
            try await Task.sleep(for: spacing)
        }
    }

    @Test func aRoundLongerThanItsBudgetYieldsTheLoop() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collectors = (0..<200).map { _ in Collector(offerCost: .microseconds(20)) }
            for collector in collectors { try await collector.attach(to: worker) }
            worker.publish(.info, "one")
            // Queued behind the drain: it runs when the first turn yields, before the round ends.
            let reachedWhenYielded = try await worker.loop.submit { collectors.filter { $0.current.lastSeq == 1 }.count }.get()
            #expect(reachedWhenYielded > 0)
            #expect(reachedWhenYielded < collectors.count, "the round (200 × 20 µs) did not yield within its budget")
            for collector in collectors { await collector.wait(forSeq: 1) }
            #expect(collectors.allSatisfy { $0.current.seqs == [1] })
        }
    }

    @Test func batchesArrivingDuringARoundReachEverySubscriberOnceInOrder() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collectors = (0..<100).map { _ in Collector(offerCost: .microseconds(30)) }
            for collector in collectors { try await collector.attach(to: worker) }
            try await publish(60, into: worker, spacing: .milliseconds(1))
            for collector in collectors { await collector.wait(forSeq: 60) }
            for collector in collectors {
                #expect(collector.current.seqs == Array(1...60))
            }
            // Batches that arrived during a round reached the subscribers behind the cursor merged into
            // one message, so there are fewer messages than records.
            let events = collectors.map { $0.current.events.count }.reduce(0, +)
            #expect(events < 60 * collectors.count, "every record went in a message of its own: no batch joined a round in progress")
        }
    }

    @Test func runsTooLargeToMergeGoOneBatchAtATime() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let collectors = (0..<100).map { _ in Collector(offerCost: .microseconds(100)) }
            for collector in collectors { try await collector.attach(to: worker) }
            let large = String(repeating: "x", count: 60_000)  // 20 of them exceed LoopSubscribers.mergedRunBytes
            for _ in 1...20 {
                worker.publish(.info, large)
                try await Task.sleep(for: .milliseconds(1))
            }
            for collector in collectors { await collector.wait(forSeq: 20) }
            for collector in collectors {
                #expect(collector.current.seqs == Array(1...20))
            }
            let largest = collectors.flatMap { $0.current.rendered }.map(\.readableBytes).max() ?? 0
            // No merged message beyond the limit (a drain's own batch may pass it by one record).
            #expect(largest <= LoopSubscribers.mergedRunBytes + 64 << 10)
        }
    }

    @Test func subscribersLeavingAndJoiningDuringARoundMissNothing() async throws {
        try await withBus { bus, _ in
            let worker = try bus.register(id)
            let loop = worker.loop
            let stayers = (0..<100).map { _ in Collector(offerCost: .microseconds(20)) }
            // These leave from inside their own offer, as a stream whose write fails does.
            let leaversInOffer = (0..<20).map { index -> Collector in
                let me = Locked<Collector?>(nil)
                let collector = Collector(offerCost: .microseconds(20)) { batch in
                    if batch.lastSeq >= UInt64(5 + index), let self = me.value { worker.fanOut.remove(self, on: loop) }
                }
                me.withLock { $0 = collector }
                return collector
            }
            let leaversBetween = (0..<20).map { _ in Collector(offerCost: .microseconds(20)) }
            var all = stayers + leaversInOffer + leaversBetween
            all.shuffle()
            for collector in all { try await collector.attach(to: worker) }

            let joiners = (0..<20).map { _ in Collector(offerCost: .microseconds(20)) }
            let publisher = Task { try await publish(80, into: worker, spacing: .microseconds(500)) }
            for index in 0..<20 {
                try await Task.sleep(for: .milliseconds(2))
                try await loop.submit {
                    worker.fanOut.remove(leaversBetween[index], on: loop)
                    worker.fanOut.add(joiners[index], rendering: CountingRendering(key: 0), on: loop)
                }.get()
            }
            try await publisher.value
            // Joiners added after the last of those records get the next ones.
            try await publish(5, into: worker, spacing: .microseconds(500))
            for collector in stayers + joiners { await collector.wait(forSeq: 85) }
            try await loop.submit {}.get()

            for collector in stayers {
                #expect(collector.current.seqs == Array(1...85))
            }
            for collector in joiners {
                let seqs = collector.current.seqs
                #expect(!seqs.isEmpty && seqs.last == 85)
                #expect(seqs == Array((seqs.first ?? 1)...85), "a joiner's seqs have a hole or a repeat")
            }
            for collector in leaversInOffer + leaversBetween {
                let seqs = collector.current.seqs
                #expect(seqs.isEmpty || seqs == Array(1...(seqs.last ?? 0)), "a leaver's seqs have a hole or a repeat")
            }
            #expect(worker.fanOut.subscriberCount == stayers.count + joiners.count)
        }
    }
}
