import NIOCore

/// One incarnation of a worker: its id and its `epoch`.
public struct RunID: Hashable, Sendable, CustomStringConvertible {
    public var worker: WorkerID
    public var epoch: String

    public init(worker: WorkerID, epoch: String) {
        self.worker = worker
        self.epoch = epoch
    }

    public var description: String { "\(worker)/\(epoch)" }

    /// Whether `text` can be an epoch: 1–32 characters of `[a-z0-9]` (what the gateway makes).
    public static func isValidEpoch(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.count <= 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) }
    }
}

/// How a run ended, or that it has not.
public enum RunStatus: String, Sendable, CaseIterable {
    /// Still published (or, after a gateway restart, waiting for its publisher to resume it).
    case running
    /// Its publisher stopped it and said nothing about success (an in-process worker, `POST …/stop`).
    case stopped
    /// Its program exited with status 0.
    case succeeded
    /// Its program exited with another status, or was killed by a signal.
    case failed
    /// Stopped by `--idle-stop`: no publisher came back.
    case idle
    /// The gateway stopped (or crashed) while the run was published from its own process: the run can
    /// never continue. A run published from another process stays `running` across a restart instead
    /// (`LogBus.resumeRemoteRuns`), and its publisher resumes it.
    case interrupted
}

/// What is known about one run: the manifest of the store, or the live worker's view of it.
public struct RunInfo: Sendable, Equatable {
    public var id: RunID
    public var owner: WorkerOwner
    public var startedAt: Timestamp
    public var stoppedAt: Timestamp?
    public var status: RunStatus
    /// The exit status of the run's program, when it had one (`tailgate run`).
    public var exitCode: Int?
    /// Why it stopped, in words (the subscribers' `end` reason).
    public var reason: String?
    /// The first seq still stored (retention may have deleted older ones); `lastSeq + 1` when none is.
    public var firstSeq: UInt64
    /// The last seq stored; 0 before the first record.
    public var lastSeq: UInt64
    /// Bytes the run takes on disk.
    public var storedBytes: Int

    public init(id: RunID, owner: WorkerOwner, startedAt: Timestamp, stoppedAt: Timestamp? = nil, status: RunStatus = .running,
                exitCode: Int? = nil, reason: String? = nil, firstSeq: UInt64 = 1, lastSeq: UInt64 = 0, storedBytes: Int = 0) {
        self.id = id
        self.owner = owner
        self.startedAt = startedAt
        self.stoppedAt = stoppedAt
        self.status = status
        self.exitCode = exitCode
        self.reason = reason
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.storedBytes = storedBytes
    }

    /// A live worker's run as it stands now.
    public init(snapshot: WorkerSnapshot, storedBytes: Int = 0) {
        self.init(id: RunID(worker: snapshot.id, epoch: snapshot.epoch), owner: snapshot.owner, startedAt: snapshot.startedAt,
                  stoppedAt: snapshot.stoppedAt, status: snapshot.status, exitCode: snapshot.exitCode, reason: snapshot.reason,
                  firstSeq: snapshot.firstSeq, lastSeq: snapshot.lastSeq, storedBytes: storedBytes)
    }

    /// How many records are stored.
    public var storedRecords: UInt64 { lastSeq >= firstSeq ? lastSeq - firstSeq + 1 : 0 }
}

/// How a run ends: written to its manifest.
public struct RunEnding: Sendable, Equatable {
    public var status: RunStatus
    public var exitCode: Int?
    public var reason: String
    public var at: Timestamp

    public init(status: RunStatus, exitCode: Int? = nil, reason: String, at: Timestamp = .now()) {
        self.status = status
        self.exitCode = exitCode
        self.reason = reason
        self.at = at
    }
}

/// A run reopened to be continued: where its seqs stand and what each of its publishers sent last.
public struct ResumedRun: Sendable {
    public var info: RunInfo
    /// The last line offset each publisher had accepted (see `PublisherOffsets`).
    public var publisherOffsets: [String: UInt64]

    public init(info: RunInfo, publisherOffsets: [String: UInt64]) {
        self.info = info
        self.publisherOffsets = publisherOffsets
    }
}

extension Sequence<RunInfo> {
    /// The newest run (latest `startedAt`; the first of equals) of each worker among these.
    public func newestPerWorker() -> [WorkerID: RunInfo] {
        var newest: [WorkerID: RunInfo] = [:]
        for run in self where newest[run.id.worker].map({ run.startedAt > $0.startedAt }) ?? true {
            newest[run.id.worker] = run
        }
        return newest
    }
}

/// What a read of stored records found at the asked seq.
public enum StoredChunk: Sendable {
    /// Records from the asked seq on (at least one), as a `logs` batch built from the stored bytes.
    case records(Batch)
    /// Records `from...to` are not stored (retention deleted them, or a write failed): a `gap`.
    case gap(from: UInt64, to: UInt64)
    /// Nothing is stored at or after the asked seq (up to the asked bound).
    case none
}

/// The store's condition, for `/api/stats` and the log.
public struct StoreHealth: Sendable, Equatable {
    /// `memory-only`, `ok` or `failed`.
    public var state: String
    /// The last write error while failed.
    public var lastError: String?
    /// Batches that could not be written since the start (their records stay in memory only).
    public var failedWrites: UInt64
    /// Bytes the store holds on disk.
    public var storedBytes: Int
    /// Runs the store holds.
    public var runs: Int
    /// Batches queued for the writer.
    public var writeQueue: Int

    public init(state: String, lastError: String? = nil, failedWrites: UInt64 = 0, storedBytes: Int = 0, runs: Int = 0, writeQueue: Int = 0) {
        self.state = state
        self.lastError = lastError
        self.failedWrites = failedWrites
        self.storedBytes = storedBytes
        self.runs = runs
        self.writeQueue = writeQueue
    }
}

/// The answer to a gateway asking to be the only writer of a worker's runs (`RunStore.acquireWriter`).
public enum WriterClaim: Sendable, Equatable {
    /// This gateway is the writer (until it releases the claim or the store says it lost it).
    case granted
    /// Another live gateway writes the worker's runs: `holder` names it (for people), and its claim lasts
    /// at least `retryAfter` more unless it is renewed.
    case heldElsewhere(holder: String, retryAfter: TimeAmount)
}

/// Where the runs of every worker are kept beyond the ring: an embedded store on local disk, or a store
/// shared by several gateways (on Redis). The ring, the bus and the server only talk to this protocol.
///
/// Every method is callable from any thread and returns quickly: writes are queued to the store's own
/// writer, reads run off the caller's event loop and complete on the loop given.
public protocol RunStore: AnyObject, Sendable {
    /// Every run stored, newest `startedAt` first within a worker (manifests only: cheap).
    func allRuns() -> [RunInfo]
    /// The runs of one worker, newest first.
    func runs(of worker: WorkerID) -> [RunInfo]
    /// One run, if stored.
    func run(_ id: RunID) -> RunInfo?

    /// Starts a new run (writes its manifest).
    func begin(_ info: RunInfo)
    /// Reopens a stored run to continue it: recovers its last seq (cutting a torn last record) and its
    /// publishers' offsets. `nil` when the run is not stored. May read from disk: call it off the hot path.
    func resume(_ id: RunID) -> ResumedRun?
    /// Queues a batch of `id`'s records for writing, with the publishers' offsets as of its last record
    /// (only those that changed since the previous batch). Never blocks; never fails (a write error
    /// marks the store failed and the batch stays in memory only).
    func append(_ batch: Batch, to id: RunID, publisherOffsets: [String: UInt64])
    /// Ends a run: its manifest gets the ending once every queued batch of it is written.
    func end(_ id: RunID, _ ending: RunEnding)
    /// Succeeds on `loop` once every record of `id` up to `seq` is written (and forced to disk when the
    /// fsync policy says `always`); at once when the store has failed (nothing better can be promised).
    func whenWritten(_ id: RunID, through seq: UInt64, on loop: EventLoop) -> EventLoopFuture<Void>
    /// Reads `id`'s records from `seq` on, no further than `through`, about `maxBytes` at most (at least
    /// one record), off the loop. Records still queued for the writer are found too.
    func read(_ id: RunID, from seq: UInt64, through: UInt64, maxBytes: Int, on loop: EventLoop) -> EventLoopFuture<StoredChunk>
    /// The store's condition.
    func health() -> StoreHealth
    /// Writes what is queued, closes the files. Blocks until done.
    func close()

    /// Claims the right to write `worker`'s runs, for the whole fleet when the store is shared by
    /// several gateways: the bus asks before it makes a worker (and before it resumes a stored run), not
    /// per record. Granted again at once while this gateway holds it. `onLost` is called (once, from the
    /// store's thread) when the store finds the claim taken by another writer or expired; the store then
    /// writes nothing more of the worker's open runs. May wait for the shared store (one round trip,
    /// bounded): call it where `resume` may be called. A store used by one gateway only always grants.
    func acquireWriter(for worker: WorkerID, onLost: @escaping @Sendable (_ reason: String) -> Void) -> WriterClaim
    /// Gives the claim up (the worker stopped): another gateway may write the worker's runs at once.
    /// Does nothing when this gateway does not hold it.
    func releaseWriter(for worker: WorkerID)

    /// Whether other gateways write into this store too (so a running run may be written elsewhere).
    var isShared: Bool { get }
    /// `worker`'s newest run, read again from the shared store first (one round trip, bounded: other
    /// gateways may have begun or ended one since the list of runs was read); `runs(of:).first` for a
    /// store only this gateway writes.
    func newestRun(of worker: WorkerID) -> RunInfo?
    /// Follows a run another gateway writes: `onEvent` gets, on `loop` and in order, each batch stored
    /// after seq `after`, then `.ended` once the run has ended and its last batch was given. `nil` when
    /// the store is not shared (nothing else writes into it). The following stops with `cancel()`.
    func follow(_ id: RunID, after seq: UInt64, on loop: EventLoop,
                _ onEvent: @escaping @Sendable (FollowedRunEvent) -> Void) -> RunFollowing?
}

/// What the follower of a run written by another gateway is told (`RunStore.follow`).
public enum FollowedRunEvent: Sendable {
    /// The run's next stored batch: its seqs follow those given before (a hole is a `gap`: records the
    /// writer could not store, or retention deleted before they were read).
    case batch(Batch)
    /// The run ended (its manifest as stored then), or is no longer stored (`nil`); nothing follows.
    case ended(RunInfo?)
}

/// A run being followed (`RunStore.follow`).
public protocol RunFollowing: AnyObject, Sendable {
    /// Stops following: no event is given after the call returns (one already on its way to the loop
    /// may still arrive).
    func cancel()
}

extension RunStore {
    /// A store only one gateway writes (the embedded one): every claim is granted.
    public func acquireWriter(for worker: WorkerID, onLost: @escaping @Sendable (_ reason: String) -> Void) -> WriterClaim { .granted }
    /// Nothing to give up.
    public func releaseWriter(for worker: WorkerID) {}
    /// Only this gateway writes.
    public var isShared: Bool { false }
    /// The newest run known.
    public func newestRun(of worker: WorkerID) -> RunInfo? { runs(of: worker).first }
    /// Nothing else writes: nothing to follow.
    public func follow(_ id: RunID, after seq: UInt64, on loop: EventLoop,
                       _ onEvent: @escaping @Sendable (FollowedRunEvent) -> Void) -> RunFollowing? { nil }
}
