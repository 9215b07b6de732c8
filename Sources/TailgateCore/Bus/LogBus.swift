import NIOCore
import Synchronization

/// Why the bus refused a request.
public enum BusError: Error, Equatable, CustomStringConvertible {
    /// A worker with this id is running; stop it first.
    case workerAlreadyRunning(WorkerID)
    /// The id belongs to a worker that another kind of publisher owns.
    case ownedByOther(WorkerID, WorkerOwner)
    /// The bus holds `maxWorkers` workers and none of them is stopped (which would make room).
    case tooManyWorkers(limit: Int)
    /// Another gateway sharing the store writes this worker's runs (it holds the worker's writer lease):
    /// `holder` names it; its lease lasts `retryAfterSeconds` more unless renewed (a dead gateway's
    /// expires, and the worker can then be published here).
    case publishedElsewhere(WorkerID, holder: String, retryAfterSeconds: Int)

    public var description: String {
        switch self {
        case .tooManyWorkers(let limit):
            "the gateway holds its limit of \(limit) workers, all running; stop one or raise the limit"
        case .workerAlreadyRunning(let id):
            "worker '\(id)' is already running; stop it before registering it again"
        case .ownedByOther(let id, let owner):
            "worker '\(id)' is published by an \(owner.rawValue) publisher"
        case .publishedElsewhere(let id, let holder, let seconds):
            "worker '\(id)' is published through another gateway (\(holder)), which holds its writer lease; publish there, or again in \(seconds) s if that gateway is gone"
        }
    }
}

/// Settings of the in-process bus.
public struct BusConfiguration: Sendable {
    /// Bounds of each worker's ring and batches.
    public var workerLimits: WorkerLimits
    /// How long a stopped worker stays readable before it is removed.
    public var retention: TimeAmount
    /// The most workers the bus holds, running and stopped; at the limit a new one replaces the oldest
    /// stopped worker, or is refused when all are running. Default 10,000.
    public var maxWorkers: Int
    /// A worker published from another process with no publisher connected and no record for this long
    /// is stopped (its subscribers get `end` with the reason). `nil`: never. Default 10 minutes.
    public var idleStop: TimeAmount?
    /// The most record bytes all rings together keep. Over it, the oldest stopped workers are removed
    /// first, then every running worker's ring is trimmed to an equal share (subscribers behind get a
    /// `gap`). `nil`: no total. Default 1 GiB.
    public var ringMemoryTotal: Int?
    /// How often the bus applies `idleStop` and `ringMemoryTotal`. Default 1 s.
    public var maintenanceInterval: TimeAmount
    /// With a store several gateways share: a worker published from another process with no publisher
    /// connected here for this long is handed back (`Worker.handBack`: this gateway gives up its writer
    /// lease and follows the run), so that its publisher can continue the run through another gateway —
    /// nginx sends a worker's publishing back to a gateway that restarted. `nil`: never. Default 10 s.
    public var handBackAfter: TimeAmount?

    public init(workerLimits: WorkerLimits = WorkerLimits(), retention: TimeAmount = .minutes(10), maxWorkers: Int = 10_000,
                idleStop: TimeAmount? = .minutes(10), ringMemoryTotal: Int? = 1 << 30, maintenanceInterval: TimeAmount = .seconds(1),
                handBackAfter: TimeAmount? = .seconds(10)) {
        self.workerLimits = workerLimits
        self.retention = retention
        self.maxWorkers = maxWorkers
        self.idleStop = idleStop
        self.ringMemoryTotal = ringMemoryTotal
        self.maintenanceInterval = maintenanceInterval
        self.handBackAfter = handBackAfter
    }

    /// Throws every problem of these settings (`retention`, `workerLimits.…`, …).
    public func validate() throws(ConfigurationError) {
        var check = ConfigurationCheck()
        check.require(retention >= .zero, "retention", "must not be negative")
        check.require(maxWorkers, in: 1...10_000_000, "maxWorkers")
        check.require(idleStop.map { $0 > .zero } ?? true, "idleStop", "must be longer than 0")
        check.require((ringMemoryTotal ?? Int.max) >= 1 << 20, "ringMemoryTotal", "must be at least 1 MiB")
        check.require(maintenanceInterval > .zero, "maintenanceInterval", "must be longer than 0")
        check.require(handBackAfter.map { $0 > .zero } ?? true, "handBackAfter", "must be longer than 0")
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
    /// Where runs are kept beyond the rings; `nil`: memory only.
    public let store: RunStore?
    private let eventLoopGroup: EventLoopGroup
    private let workers = Lock<[WorkerID: Worker]>([:])
    private let drainQueues = Lock<[DrainQueue]>([])
    /// The repeated task applying `idleStop` and `ringMemoryTotal`, started with the first worker.
    private let maintenance = Lock<RepeatedTask?>(nil)
    /// The share each ring is held to while the total is over budget, else nil.
    private let ringShare = Lock<Int?>(nil)
    private let runsStarted = Atomic<Int>(0)
    /// Mirrors removed from the table, followed until their last subscriber leaves.
    private let unwatchedMirrors = Lock<[Worker]>([])
    /// The loops' finished ticks, when the group counts them (see `LoopTicks`).
    private let loopTicks: LoopTicks?

    /// Makes an empty bus with the default settings whose workers drain on `eventLoopGroup`.
    public init(eventLoopGroup: EventLoopGroup) {
        self.configuration = BusConfiguration()
        self.eventLoopGroup = eventLoopGroup
        self.store = nil
        self.loopTicks = nil
    }

    /// Makes an empty bus whose workers drain on `eventLoopGroup` and whose runs are kept in `store`
    /// (`nil`: in memory only). Throws when a setting cannot be used. `loopTicks`, when the group's
    /// metrics delegate feeds it, lets a drain start at once whenever the loop has polled its sockets
    /// since the last one (lower latency); without it drains are at least `minimumDrainInterval` apart.
    public init(configuration: BusConfiguration, eventLoopGroup: EventLoopGroup, store: RunStore? = nil,
                loopTicks: LoopTicks? = nil) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.store = store
        self.loopTicks = loopTicks
    }

    /// Registers an in-process worker: always a new run (an earlier run of the id is history). Throws
    /// `BusError.workerAlreadyRunning` when a worker with this id is running, and
    /// `BusError.publishedElsewhere` when another gateway sharing the store holds the id's writer lease.
    /// A stopped worker with the same id (still retained) is replaced.
    public func register(_ id: WorkerID) throws(BusError) -> Worker {
        if let existing = worker(id), !existing.isStopping, !existing.isMirror { throw BusError.workerAlreadyRunning(id) }
        try claimWriter(of: id)
        var claimed = false
        defer { if !claimed { store?.releaseWriter(for: id) } }
        return try workers.withLock { table throws(BusError) in
            if let existing = table[id], !existing.isStopping {
                guard existing.isMirror else { throw BusError.workerAlreadyRunning(id) }
                // The run it mirrored has no writer left (this gateway holds the lease now): a new run starts.
                existing.stop(reason: "a new run of the worker started", status: .interrupted)
            }
            try makeRoom(for: id, in: &table)
            let worker = makeWorker(id, owner: .inProcess, workersBefore: table.count)
            table[id] = worker
            claimed = true
            return worker
        }
    }

    /// The running worker with this id that a remote publisher may write into, created when missing:
    /// the stored run of the id when it was left open by a restart (same epoch, seqs continue), else a
    /// new run. Throws `BusError.ownedByOther` when an in-process worker with this id is running, and
    /// `BusError.publishedElsewhere` when another gateway sharing the store holds the id's writer lease
    /// (taken here before the worker is made, so that a run is written by one gateway at a time; the
    /// stored run is read after it, so that its seqs continue from what the previous writer stored).
    public func remoteWorker(_ id: WorkerID) throws(BusError) -> Worker {
        let known = worker(id)
        if let known, !known.isStopping, !known.isMirror {
            guard known.owner == .remote else { throw BusError.ownedByOther(id, known.owner) }
            return known
        }
        try claimWriter(of: id)
        if let known, known.isMirror, let promoted = promote(known) { return promoted }
        var claimed = false
        defer { if !claimed { store?.releaseWriter(for: id) } }
        // Reopening a stored run reads its tail from disk: done before taking the table's lock. A
        // worker still held in memory (stopped) means its run ended: a new one starts — unless it was
        // stopped because another gateway took its run over (`writerLost`): the run goes on here again.
        let handedOver = known.map { $0.owner == .remote && $0.ending.status == .interrupted } ?? false
        let resumable = known == nil || handedOver ? resumableRun(of: id) : nil
        return try workers.withLock { table throws(BusError) in
            if let existing = table[id], !existing.isStopping {
                guard existing.owner == .remote else { throw BusError.ownedByOther(id, existing.owner) }
                return existing
            }
            try makeRoom(for: id, in: &table)
            let continues = table[id] == nil || (handedOver && table[id] === known)
            let worker = makeWorker(id, owner: .remote, workersBefore: table.count, resumed: continues ? resumable : nil)
            table[id] = worker
            claimed = true
            return worker
        }
    }

    /// Takes over the run `mirror` follows, to write it here (a publisher came, or the run is to be
    /// stopped or ended as idle here): the worker itself when this gateway gets the run's writer lease
    /// and the run is still open in the store; `nil` when the run ended meanwhile. Throws
    /// `BusError.publishedElsewhere` while another gateway holds the lease. A worker that is no mirror
    /// is returned as it is.
    public func takeOver(_ mirror: Worker) throws(BusError) -> Worker? {
        guard mirror.isMirror else { return mirror }
        try claimWriter(of: mirror.id)
        if let promoted = promote(mirror) { return promoted }
        store?.releaseWriter(for: mirror.id)
        return nil
    }

    /// A mirror whose run this gateway now writes (its lease was just granted here): the same worker
    /// continues the run as its writer when the store has it as the newest run of the worker, published
    /// from another process and still open; otherwise the mirror stops and `nil` lets a worker be made.
    private func promote(_ mirror: Worker) -> Worker? {
        guard mirror.owner == .remote, let resumed = resumableRun(of: mirror.id), resumed.info.id == mirror.runID else {
            mirror.stop(reason: "the run ended: it has no writer left", status: .interrupted)
            return nil
        }
        let promoted = workers.withLock { table -> Bool in
            guard table[mirror.id] === mirror, !mirror.isStopping else { return false }
            mirror.promote(resumed)
            return true
        }
        guard promoted else { return nil }
        if configuration.idleStop != nil { startMaintenance() }
        return mirror
    }

    /// The worker that serves `run`, a run another gateway writes (a store shared by several gateways):
    /// the local worker when it serves that run, else a mirror made for it that follows the run through
    /// the store (its subscribers get the writer's batches and its `end`). `nil` when the store is not
    /// shared, or the bus is full of running workers.
    public func mirror(of run: RunInfo) -> Worker? {
        guard let store, store.isShared, run.status == .running else { return nil }
        let found: (worker: Worker, made: Bool)? = workers.withLock { table in
            if let existing = table[run.id.worker], !existing.isStopping {
                return existing.epoch == run.id.epoch ? (existing, false) : nil
            }
            guard (try? makeRoom(for: run.id.worker, in: &table)) != nil else { return nil }
            let worker = Worker(id: run.id.worker, owner: run.owner, resumed: ResumedRun(info: run, publisherOffsets: [:]), mirroring: true,
                                store: store, limits: configuration.workerLimits, drains: drainQueue(on: eventLoopGroup.next())) { [weak self] worker in
                self?.workerStopped(worker)
            }
            table[run.id.worker] = worker
            runsStarted.add(1, ordering: .releasing)
            return (worker, true)
        }
        guard let found else { return nil }
        if found.made {
            if let share = ringShare.withLock({ $0 }) { found.worker.setRingBudget(share) }
            found.worker.startFollowing()
            startMaintenance()
        }
        return found.worker
    }

    /// With a store several gateways share: makes mirrors for the running runs of the fleet that other
    /// gateways write and whose worker id starts with one of `prefixes` (pattern subscriptions), so that
    /// they appear among `allWorkers()` (and `runsStartedCount` moves). Does nothing otherwise.
    public func mirrorFleet(matching prefixes: some Collection<String>) {
        guard let store, store.isShared, !prefixes.isEmpty else { return }
        let newest = store.allRuns().filter { run in prefixes.contains { run.id.worker.rawValue.hasPrefix($0) } }.newestPerWorker()
        for run in newest.values where run.status == .running {
            if let local = worker(run.id.worker), !local.isStopping { continue }
            _ = mirror(of: run)
        }
    }

    /// Claims `id`'s writer lease in the store (always granted by a store only this gateway writes);
    /// each worker made holds one claim, given back when it stops.
    private func claimWriter(of id: WorkerID) throws(BusError) {
        guard let store else { return }
        let claim = store.acquireWriter(for: id) { [weak self] reason in self?.writerLost(id, reason: reason) }
        guard case .heldElsewhere(let holder, let retryAfter) = claim else { return }
        let seconds = max(1, Int((retryAfter.nanoseconds + 999_999_999) / 1_000_000_000))
        throw BusError.publishedElsewhere(id, holder: holder, retryAfterSeconds: seconds)
    }

    /// The store found `id`'s writer lease taken by another gateway, or expired: the local worker stops
    /// (its subscribers get `end` with the reason) rather than write beside another writer; the store
    /// writes nothing more of its run, which goes on through the other gateway.
    private func writerLost(_ id: WorkerID, reason: String) {
        guard let worker = worker(id), !worker.isStopping else { return }
        worker.stop(reason: "this gateway stopped writing the run: \(reason)", status: .interrupted)
    }

    /// Brings back, as running workers, the runs that publishers in other processes were writing when
    /// the gateway stopped (or crashed): the newest run of each worker, when it is remote and was left
    /// open. Each continues as it would when its publisher comes back (same epoch, seqs go on), so that
    /// its subscribers can resume at once and wait for its next records; `idleStop` ends those whose
    /// publisher does not return. Call once, after opening the store and before serving. Returns how
    /// many runs came back (at most `maxWorkers`; the others come back when their publisher does).
    /// With a store shared by several gateways, only the runs whose writer lease this gateway gets come
    /// back here (a run another live gateway writes is left to it).
    @discardableResult
    public func resumeRemoteRuns() -> Int {
        guard let store else { return 0 }
        let newest = store.allRuns().newestPerWorker()
        var resumed = 0
        runs: for run in newest.values.sorted(by: { $0.startedAt > $1.startedAt })
        where run.owner == .remote && (run.status == .interrupted || run.status == .running) {
            do {
                _ = try remoteWorker(run.id.worker)
                resumed += 1
            } catch .tooManyWorkers {
                break runs
            } catch {
                continue  // an in-process worker took the id, or another gateway writes the run (its lease)
            }
        }
        return resumed
    }

    /// The stored run of `id` that a remote publisher continues: its newest run, when it was published
    /// from another process and left open (the gateway stopped while it ran).
    private func resumableRun(of id: WorkerID) -> ResumedRun? {
        guard let store, let last = store.runs(of: id).first, last.owner == .remote,
              last.status == .interrupted || last.status == .running
        else { return nil }
        return store.resume(last.id)
    }

    private func makeWorker(_ id: WorkerID, owner: WorkerOwner, workersBefore: Int, resumed: ResumedRun? = nil) -> Worker {
        // Maintenance has work only once a remote worker may idle or the rings could outgrow their total.
        let ringsCouldExceed = configuration.ringMemoryTotal.map { total in
            let (capacity, overflow) = (workersBefore + 1).multipliedReportingOverflow(by: configuration.workerLimits.ringBytes)
            return overflow || capacity > total
        } ?? false
        let handsBack = owner == .remote && configuration.handBackAfter != nil && (store?.isShared ?? false)
        if (owner == .remote && configuration.idleStop != nil) || handsBack || ringsCouldExceed { startMaintenance() }
        let worker = Worker(id: id, owner: owner, resumed: resumed, store: store, limits: configuration.workerLimits,
                            drains: drainQueue(on: eventLoopGroup.next())) { [weak self] worker in
            self?.workerStopped(worker)
        }
        if resumed == nil { store?.begin(RunInfo(id: worker.runID, owner: owner, startedAt: worker.startedAt)) }
        runsStarted.add(1, ordering: .releasing)
        if let share = ringShare.withLock({ $0 }) { worker.setRingBudget(share) }
        return worker
    }

    /// A worker stopped: its claim on its writer lease (taken before it was made, or when a mirror became
    /// the writer) is given back — a mirror holds none, whether it never wrote or handed its run back —
    /// and it is removed after the retention time.
    private func workerStopped(_ worker: Worker) {
        if !worker.isMirror { store?.releaseWriter(for: worker.id) }
        scheduleRemoval(of: worker)
    }

    /// At `maxWorkers`, removes the oldest stopped worker (not `id`'s own entry, which is replaced) or
    /// throws `tooManyWorkers` when every worker runs.
    private func makeRoom(for id: WorkerID, in table: inout [WorkerID: Worker]) throws(BusError) {
        let others = table[id] == nil ? table.count : table.count - 1
        guard others >= configuration.maxWorkers else { return }
        let oldest = table.values.compactMap { worker in worker.id == id ? nil : worker.stoppedAt.map { (worker.id, $0) } }
            .min { $0.1 < $1.1 }
        guard let oldest else { throw .tooManyWorkers(limit: configuration.maxWorkers) }
        table[oldest.0] = nil
    }

    // MARK: Maintenance: idle workers and the rings' memory

    private func startMaintenance() {
        maintenance.withLock { task in
            guard task == nil else { return }
            let interval = configuration.maintenanceInterval
            task = eventLoopGroup.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
                self?.maintain()
            }
        }
    }

    /// Stops idle remote workers, lets go of mirrors nobody watches, then holds the rings to
    /// `ringMemoryTotal`.
    func maintain() {
        letGoOfUnwatchedMirrors()
        let all = workers.withLock { Array($0.values) }
        if let idleStop = configuration.idleStop {
            let reason = "idle: no publisher connected and no record for \(idleStop.nanoseconds / 1_000_000_000) s"
            for worker in all where worker.owner == .remote && !worker.isStopping && worker.isIdle(since: worker.loop.now - idleStop) {
                guard worker.isMirror else {
                    worker.stop(reason: reason, status: .idle)
                    continue
                }
                // A run nobody writes any more (its writer handed it back or died, and no record came for
                // as long): this gateway takes the run to end it — unless another gateway writes it.
                if let taken = try? takeOver(worker), taken === worker { worker.stop(reason: reason, status: .idle) }
            }
        }
        if let store, store.isShared, let handBack = configuration.handBackAfter, store.health().state == "ok" {
            for worker in all where worker.owner == .remote && !worker.isStopping && !worker.isMirror && worker.isIdle(since: worker.loop.now - handBack) {
                _ = worker.handBack { [weak self, id = worker.id] in self?.store?.releaseWriter(for: id) }
            }
        }
        guard let budget = configuration.ringMemoryTotal else { return }
        var bytes = all.map { worker in (worker, worker.withRing { ring, _ in ring.recordBytes }) }
        var total = bytes.reduce(0) { $0 + $1.1 }
        if total > budget {
            // The oldest stopped workers' history goes first.
            let stopped = bytes.compactMap { entry in entry.0.stoppedAt.map { (entry, $0) } }.sorted { $0.1 < $1.1 }.map(\.0)
            for (worker, size) in stopped where total > budget {
                workers.withLock { table in if table[worker.id] === worker { table[worker.id] = nil } }
                total -= size
                bytes.removeAll { $0.0 === worker }
            }
        }
        // Over budget: an equal share; under three quarters of it: none; in between, the share holds.
        let previous = ringShare.withLock { $0 }
        let share = total > budget ? max(1, budget / max(1, bytes.count)) : (total < budget * 3 / 4 ? nil : previous)
        guard share != previous else { return }
        ringShare.withLock { $0 = share }
        for (worker, _) in bytes { worker.setRingBudget(share) }
    }

    /// How long a mirror stays without subscribers before it stops following its run and is removed.
    static let unwatchedMirrorLifetime = TimeAmount.seconds(30)

    /// Mirrors without a subscriber for `unwatchedMirrorLifetime` leave the table; each stops following
    /// its run at the next look once still nobody watches it (a subscriber may have found it just before
    /// it left: it is followed for as long as someone does).
    private func letGoOfUnwatchedMirrors() {
        let now = NIODeadline.now()
        let leaving = workers.withLock { table -> [Worker] in
            var leaving: [Worker] = []
            // A mirror of a run this gateway handed back stays: it ends the run if nobody continues it.
            for worker in table.values where worker.isMirror && !worker.isStopping && !worker.wasHandedBack {
                guard worker.unwatched(since: now) >= Self.unwatchedMirrorLifetime else { continue }
                table[worker.id] = nil
                leaving.append(worker)
            }
            return leaving
        }
        unwatchedMirrors.withLock { retired in
            var kept: [Worker] = []
            for worker in retired {
                if worker.fanOut.subscriberCount == 0 { worker.stopFollowing() } else { kept.append(worker) }
            }
            retired = kept + leaving
        }
    }

    /// Record bytes all rings hold now, and the share each is held to while over budget.
    public func ringMemory() -> (total: Int, sharePerWorker: Int?) {
        let total = allWorkers().reduce(0) { $0 + $1.withRing { ring, _ in ring.recordBytes } }
        return (total, ringShare.withLock { $0 })
    }

    /// The drain queue of `loop`, shared by every worker drained on it.
    private func drainQueue(on loop: EventLoop) -> DrainQueue {
        drainQueues.withLock { queues in
            if let queue = queues.first(where: { $0.loop === loop }) { return queue }
            let queue = DrainQueue(loop: loop, minimumInterval: configuration.workerLimits.minimumDrainInterval, ticks: loopTicks)
            queues.append(queue)
            return queue
        }
    }

    /// Removes `worker` after the retention time, unless a new incarnation took its id meanwhile. The
    /// task holds it weakly: a worker replaced by a new registration is freed as soon as nothing else
    /// (a subscriber finishing its replay) holds it, not when its retention ends.
    private func scheduleRemoval(of worker: Worker) {
        let id = worker.id
        worker.loop.scheduleTask(in: configuration.retention) { [weak self, weak worker] in
            guard let worker else { return }
            self?.workers.withLock { table in
                if table[id] === worker { table[id] = nil }
            }
        }
    }

    /// How many workers (runs) the bus has made so far: when it has not changed, no worker appeared.
    public var runsStartedCount: Int { runsStarted.load(ordering: .acquiring) }

    /// The worker with this id, running or retained after stopping.
    public func worker(_ id: WorkerID) -> Worker? {
        workers.withLock { $0[id] }
    }

    /// Every known worker, sorted by id.
    public func allWorkers() -> [Worker] {
        workers.withLock { Array($0.values) }.sorted { $0.id < $1.id }
    }

    /// Ends the runs of every running in-process worker as `interrupted` (the gateway stops; those runs
    /// can never continue), then writes what the store has queued and closes it. Runs published from
    /// other processes stay open in the store: their publishers continue them after a restart.
    public func close(reason: String = "the gateway stopped") {
        let running = allWorkers().filter { $0.owner == .inProcess && !$0.isStopping && !$0.isMirror }
        for mirror in allWorkers() where mirror.isMirror { mirror.stopFollowing() }
        for mirror in unwatchedMirrors.withLock({ $0 }) { mirror.stopFollowing() }
        var pending: [EventLoopFuture<Void>] = []
        for worker in running {
            pending.append(worker.whenStopped())
            worker.stop(reason: reason, status: .interrupted)
        }
        for future in pending { try? future.wait() }
        store?.close()
    }
}
