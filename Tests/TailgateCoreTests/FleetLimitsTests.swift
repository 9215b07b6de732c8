import NIOCore
import NIOEmbedded
import Testing
@testable import TailgateCore

/// What keeps a fleet of workers bounded: the worker cap, the idle stop of remote workers, and the
/// memory budget of all rings together. Time is the embedded loop's.
@Suite("Fleet limits: max workers, idle stop, ring memory")
struct FleetLimitsTests {
    private func bus(_ configure: (inout BusConfiguration) -> Void) throws -> (EmbeddedEventLoop, LogBus) {
        let loop = EmbeddedEventLoop()
        var configuration = BusConfiguration()
        configure(&configuration)
        return (loop, try LogBus(configuration: configuration, eventLoopGroup: loop))
    }

    @Test("at maxWorkers a new worker replaces the oldest stopped one, or is refused when all run")
    func maxWorkers() throws {
        let (loop, bus) = try bus { $0.maxWorkers = 3 }
        let a = try bus.register(WorkerID("a")!)
        _ = try bus.register(WorkerID("b")!)
        let c = try bus.remoteWorker(WorkerID("c")!)
        #expect(throws: BusError.tooManyWorkers(limit: 3)) { try bus.register(WorkerID("d")!) }
        #expect(throws: BusError.tooManyWorkers(limit: 3)) { try bus.remoteWorker(WorkerID("e")!) }
        c.stop()
        loop.advanceTime(by: .milliseconds(5))
        a.stop()
        loop.advanceTime(by: .milliseconds(5))
        _ = try bus.register(WorkerID("d")!)
        #expect(bus.worker(WorkerID("c")!) == nil, "the oldest stopped worker made room")
        #expect(bus.worker(WorkerID("a")!) != nil)
        #expect(bus.allWorkers().count == 3)
    }

    @Test("a remote worker with no publisher and no record for idleStop is stopped, with the reason in end; connected, it is not")
    func idleStop() throws {
        let (loop, bus) = try bus { $0.idleStop = .seconds(10) }
        let remote = try bus.remoteWorker(WorkerID("remote")!)
        let local = try bus.register(WorkerID("local")!)
        remote.publisherConnection(opened: true)
        loop.advanceTime(by: .seconds(30))
        #expect(!remote.isStopping, "a connected publisher keeps it, however quiet")
        remote.publisherConnection(opened: false)
        loop.advanceTime(by: .seconds(9))
        #expect(!remote.isStopping)
        loop.advanceTime(by: .seconds(2))
        #expect(remote.isStopping)
        #expect(remote.snapshot().state == .stopped)
        #expect(remote.stopReason == "idle: no publisher connected and no record for 10 s")
        #expect(!local.isStopping, "in-process workers are never stopped for idleness")
    }

    @Test("over ringMemoryTotal the oldest stopped workers go first, then each ring is trimmed to an equal share")
    func ringMemory() throws {
        let (loop, bus) = try bus { $0.ringMemoryTotal = 1 << 20; $0.idleStop = nil }
        let workers = try (0..<4).map { try bus.register(WorkerID("w\($0)")!) }
        let line = String(repeating: "x", count: 1000)
        for worker in workers {
            for _ in 0..<600 { worker.publish(.info, line) }
        }
        loop.advanceTime(by: .milliseconds(5))
        #expect(bus.ringMemory().total > 2 << 20)
        bus.maintain()
        let trimmed = bus.ringMemory()
        #expect(trimmed.total <= 1 << 20)
        #expect(trimmed.sharePerWorker == (1 << 20) / 4)
        #expect(workers.allSatisfy { $0.snapshot().ringBytes <= (1 << 20) / 4 })
        #expect(workers.allSatisfy { $0.snapshot().firstSeq > 1 }, "the oldest records left every ring")

    }

    @Test("the oldest stopped workers' history goes before running rings are trimmed")
    func stoppedFirst() throws {
        let (loop, bus) = try bus { $0.ringMemoryTotal = 1 << 20; $0.idleStop = nil; $0.retention = .seconds(60) }
        let line = String(repeating: "x", count: 1000)
        let workers = try (0..<4).map { try bus.register(WorkerID("w\($0)")!) }
        for worker in workers {
            for _ in 0..<600 { worker.publish(.info, line) }
        }
        workers[1].stop()
        loop.advanceTime(by: .milliseconds(5))
        workers[0].stop()
        loop.advanceTime(by: .milliseconds(5))
        bus.maintain()
        #expect(bus.worker(WorkerID("w0")!) == nil && bus.worker(WorkerID("w1")!) == nil, "both stopped workers went")
        #expect(bus.ringMemory().total <= 1 << 20)
        #expect(bus.ringMemory().sharePerWorker == (1 << 20) / 2, "the two running rings share the budget")
        // With memory to spare again, the share is lifted.
        workers[2].stop()
        workers[3].stop()
        loop.advanceTime(by: .seconds(61))  // their retention ends: nothing is left
        bus.maintain()
        #expect(bus.ringMemory().total == 0)
        let fresh = try bus.register(WorkerID("fresh")!)
        bus.maintain()
        bus.maintain()
        #expect(bus.ringMemory().sharePerWorker == nil)
        #expect(fresh.withRing { ring, _ in ring.maxBytes } == WorkerLimits().ringBytes)
    }
}

@Suite("Worker lifetime")
struct WorkerLifetimeTests {
    @Test("a stopped worker replaced by a new registration of its id is freed at once, not after its retention")
    func replacedWorkerIsFreed() throws {
        let loop = EmbeddedEventLoop()
        let bus = try LogBus(configuration: BusConfiguration(retention: .seconds(600), idleStop: nil), eventLoopGroup: loop)
        let id = WorkerID("pub-1")!
        weak var first: Worker?
        do {
            let worker = try bus.remoteWorker(id)
            for index in 0..<1000 { worker.publish(.info, "record \(index)") }
            worker.stop()
            loop.advanceTime(by: .milliseconds(5))
            first = worker
        }
        #expect(first != nil, "retained while it is the id's worker")
        let second = try bus.remoteWorker(id)
        loop.advanceTime(by: .milliseconds(5))
        #expect(first == nil, "the replaced incarnation and its ring are gone")
        #expect(bus.worker(id) === second)
        loop.advanceTime(by: .seconds(601))
        #expect(bus.worker(id) === second, "the old retention timer does not remove the new incarnation")
    }
}
