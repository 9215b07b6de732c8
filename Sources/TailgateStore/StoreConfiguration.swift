import NIOCore
import TailgateCore

/// When written data is forced to disk (`--fsync`).
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// Every `StoreConfiguration.fsyncInterval` (default 1 s): a machine crash costs at most that much.
    case interval
    /// Before `whenWritten` succeeds, i.e. before a publisher's answer.
    case always
    /// Never explicitly: the kernel writes back when it likes.
    case never
}

/// Settings of the embedded store (`--data-dir`, `--fsync`, `--retain-days`, `--retain-bytes`).
public struct StoreConfiguration: Sendable {
    /// The folder holding every run; created when missing.
    public var directory: String
    public var fsync: FsyncPolicy
    public var fsyncInterval: TimeAmount
    /// Runs that ended longer ago than this are deleted. `nil`: kept regardless of age.
    public var retainAge: TimeAmount?
    /// The most bytes the store holds; over it, the oldest runs go first. `nil`: no limit.
    public var retainBytes: Int?
    /// The size at which a run's segment file is closed and the next one begun.
    public var segmentBytes: Int
    /// How often retention is applied and a failed store retries its writes.
    public var maintenanceInterval: TimeAmount
    /// The most bytes of records waiting for the writer (default 64 MiB). When the disk does not keep
    /// up, records beyond it are dropped for the disk (kept in memory only) and the store reports
    /// `failed`: memory stays bounded.
    public var writeQueueBytes: Int
    /// How long the writer, woken by a first batch after a quiet spell, lets more batches gather before
    /// it writes (default 5 ms): fewer, larger writes and wake-ups under a steady stream. It writes at
    /// once when someone waits for the data (`whenWritten`, `flush`, a resumed run, closing), or when
    /// `coalesceBytes` are queued. Zero: write as soon as woken.
    public var coalesceDelay: TimeAmount
    /// Queued bytes that end a coalescing delay early (default 1 MiB).
    public var coalesceBytes: Int

    public init(directory: String, fsync: FsyncPolicy = .interval, fsyncInterval: TimeAmount = .seconds(1),
                retainAge: TimeAmount? = .hours(24 * 14), retainBytes: Int? = 10 << 30,
                segmentBytes: Int = 16 << 20, maintenanceInterval: TimeAmount = .seconds(5), writeQueueBytes: Int = 64 << 20,
                coalesceDelay: TimeAmount = .milliseconds(5), coalesceBytes: Int = 1 << 20) {
        self.directory = directory
        self.fsync = fsync
        self.fsyncInterval = fsyncInterval
        self.retainAge = retainAge
        self.retainBytes = retainBytes
        self.segmentBytes = segmentBytes
        self.maintenanceInterval = maintenanceInterval
        self.writeQueueBytes = writeQueueBytes
        self.coalesceDelay = coalesceDelay
        self.coalesceBytes = coalesceBytes
    }

    /// Throws every problem of these settings.
    public func validate() throws(ConfigurationError) {
        var check = ConfigurationCheck()
        check.require(!directory.isEmpty, "directory", "must not be empty")
        check.require(fsyncInterval > .zero, "fsyncInterval", "must be longer than 0")
        check.require(retainAge.map { $0 > .zero } ?? true, "retainAge", "must be longer than 0")
        check.require((retainBytes ?? Int.max) >= 1 << 20, "retainBytes", "must be at least 1 MiB")
        check.require(segmentBytes, in: 64 << 10 ... 1 << 30, "segmentBytes")
        check.require(maintenanceInterval > .zero, "maintenanceInterval", "must be longer than 0")
        check.require(writeQueueBytes >= 1 << 20, "writeQueueBytes", "must be at least 1 MiB")
        check.require(coalesceDelay >= .zero && coalesceDelay <= .seconds(10), "coalesceDelay", "must be between 0 and 10 s")
        check.require(coalesceBytes >= 1, "coalesceBytes", "must be at least 1")
        try check.throwIfAny()
    }
}
