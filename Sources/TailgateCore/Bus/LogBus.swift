import NIOCore
import Synchronization

/// Why the bus refused a request.
public enum BusError: Error, Equatable, CustomStringConvertible {
    /// A worker with this id is running; stop it first.
    case workerAlreadyRunning(WorkerID)
    /// The id belongs to a worker that another kind of publisher owns.
    case ownedByOther(WorkerID, WorkerOwner)

    public var description: String {
        switch self {
        case .workerAlreadyRunning(let id):
            "worker '\(id)' is already running; stop it before registering it again"
        case .ownedByOther(let id, let owner):
            "worker '\(id)' is published by an \(owner.rawValue) publisher"
        }
    }
}

/// Settings of the in-process bus.
public struct BusConfiguration: Sendable {
    /// Bounds of each worker's ring and batches.
    public var workerLimits: WorkerLimits
    /// How long a stopped worker stays readable before it is removed.
    public var retention: TimeAmount

    public init(workerLimits: WorkerLimits = WorkerLimits(), retention: TimeAmount = .minutes(10)) {
        self.workerLimits = workerLimits
        self.retention = retention
    }

    /// Throws every problem of these settings (`retention`, `workerLimits.…`).
    public func validate() throws(ConfigurationError) {
        var check = ConfigurationCheck()
        check.require(retention >= .zero, "retention", "must not be negative")
        check.include(workerLimits.check(prefix: "workerLimits."))
        try check.throwIfAny()
    }
}

/// The in-process bus: the registry of workers by id.
///
/// Register a worker to get its `Worker`, then `publish` into it from any thread. Each worker is drained
/// on one loop of `eventLoopGroup`, chosen when it is registered.
public final class LogBus: Sendable {
    /// The bus's settings.
    public let configuration: BusConfiguration
    private let eventLoopGroup: EventLoopGroup
    private let workers = Mutex<[WorkerID: Worker]>([:])
    private let drainQueues = Mutex<[DrainQueue]>([])

    /// Makes an empty bus with the default settings whose workers drain on `eventLoopGroup`.
    public init(eventLoopGroup: EventLoopGroup) {
        self.configuration = BusConfiguration()
        self.eventLoopGroup = eventLoopGroup
    }

    /// Makes an empty bus whose workers drain on `eventLoopGroup`. Throws when a setting cannot be used.
    public init(configuration: BusConfiguration, eventLoopGroup: EventLoopGroup) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
    }

    /// Registers an in-process worker. Throws `BusError.workerAlreadyRunning` when a worker with this id
    /// is running. A stopped worker with the same id (still retained) is replaced.
    public func register(_ id: WorkerID) throws -> Worker {
        try workers.withLock { table in
            if let existing = table[id], !existing.isStopping { throw BusError.workerAlreadyRunning(id) }
            let worker = makeWorker(id, owner: .inProcess)
            table[id] = worker
            return worker
        }
    }

    /// The running worker with this id that a remote publisher may write into, created when missing.
    /// Throws `BusError.ownedByOther` when an in-process worker with this id is running.
    public func remoteWorker(_ id: WorkerID) throws -> Worker {
        try workers.withLock { table in
            if let existing = table[id], !existing.isStopping {
                guard existing.owner == .remote else { throw BusError.ownedByOther(id, existing.owner) }
                return existing
            }
            let worker = makeWorker(id, owner: .remote)
            table[id] = worker
            return worker
        }
    }

    private func makeWorker(_ id: WorkerID, owner: WorkerOwner) -> Worker {
        Worker(id: id, owner: owner, limits: configuration.workerLimits, drains: drainQueue(on: eventLoopGroup.next())) { [weak self] worker in
            self?.scheduleRemoval(of: worker)
        }
    }

    /// The drain queue of `loop`, shared by every worker drained on it.
    private func drainQueue(on loop: EventLoop) -> DrainQueue {
        drainQueues.withLock { queues in
            if let queue = queues.first(where: { $0.loop === loop }) { return queue }
            let queue = DrainQueue(loop: loop, minimumInterval: configuration.workerLimits.minimumDrainInterval)
            queues.append(queue)
            return queue
        }
    }

    private func scheduleRemoval(of worker: Worker) {
        worker.loop.scheduleTask(in: configuration.retention) { [weak self] in
            self?.workers.withLock { table in
                if table[worker.id] === worker { table[worker.id] = nil }
            }
        }
    }

    /// The worker with this id, running or retained after stopping.
    public func worker(_ id: WorkerID) -> Worker? {
        workers.withLock { $0[id] }
    }

    /// Every known worker, sorted by id.
    public func allWorkers() -> [Worker] {
        workers.withLock { Array($0.values) }.sorted { $0.id < $1.id }
    }
}
