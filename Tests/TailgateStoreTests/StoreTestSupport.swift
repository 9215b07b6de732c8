import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TailgateCore
import Testing
@testable import TailgateStore

// Helpers shared by the store's test suites: real files in a temporary folder, real threads.

/// A fresh folder under the system's temporary folder; a test removes it with `defer { folder.remove() }`
/// (explicitly, at the end of the test's scope: never while a store still uses it).
struct TemporaryFolder {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "/tailgate-store-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    /// Deletes the folder and everything in it.
    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The store's data directory inside the folder.
    var dataDirectory: String { path + "/data" }
}

/// Log messages kept for assertions.
final class LogRecorder: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
    }

    private let entries = Mutex<[Entry]>([])

    /// A logger writing here (and nowhere else).
    var logger: Logger {
        Logger(label: "store-test") { _ in RecordingLogHandler(recorder: self) }
    }

    func append(_ entry: Entry) {
        entries.withLock { $0.append(entry) }
    }

    /// The messages logged at `level`.
    func messages(at level: Logger.Level) -> [String] {
        entries.withLock { $0.filter { $0.level == level }.map(\.message) }
    }
}

/// The handler behind `LogRecorder.logger`.
struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        recorder.append(.init(level: event.level, message: event.message.description))
    }
}

/// The settings tests use: small segments, no timers firing during a test (retention is applied
/// explicitly with `applyRetention()`).
func testConfiguration(_ directory: String, fsync: FsyncPolicy = .never, segmentBytes: Int = 64 << 10,
                       retainAge: TimeAmount? = nil, retainBytes: Int? = nil) -> StoreConfiguration {
    StoreConfiguration(directory: directory, fsync: fsync, fsyncInterval: .milliseconds(50), retainAge: retainAge,
                       retainBytes: retainBytes, segmentBytes: segmentBytes, maintenanceInterval: .hours(1))
}

/// The loop futures complete on.
let testLoop: EventLoop = MultiThreadedEventLoopGroup.singleton.next()

/// A run id for tests.
func runID(_ worker: String = "job-1", _ epoch: String = "e1") -> RunID {
    RunID(worker: WorkerID(worker)!, epoch: epoch)
}

/// The info of a new run started at `startedAt`.
func newRun(_ id: RunID, startedAt: Timestamp = .now(), owner: WorkerOwner = .remote) -> RunInfo {
    RunInfo(id: id, owner: owner, startedAt: startedAt)
}

/// A batch of `count` records from `firstSeq` on; each message names its seq and is padded to about
/// `messageBytes`.
func makeBatch(firstSeq: UInt64, count: Int, messageBytes: Int = 100) -> Batch {
    var builder = BatchBuilder(firstSeq: firstSeq)
    for offset in 0..<count {
        let seq = firstSeq + UInt64(offset)
        let text = "record \(seq) "
        let padding = String(repeating: "x", count: max(0, messageBytes - text.count))
        builder.append(LogRecord(message: text + padding), timestamp: Timestamp(microseconds: 1_700_000_000_000_000 + Int64(seq)))
    }
    return builder.finish()!
}

/// The seq and message of every record of a batch, checked against each other.
func seqs(of batch: Batch) -> [UInt64] {
    var seqs: [UInt64] = []
    batch.forEachRecord { seq, record in
        let object = try? JSONSerialization.jsonObject(with: Data(record.readableBytesView)) as? [String: Any]
        let storedSeq = (object?["seq"] as? NSNumber)?.uint64Value
        let message = object?["message"] as? String ?? ""
        #expect(storedSeq == seq, "record \(seq) holds seq \(String(describing: storedSeq))")
        #expect(message.hasPrefix("record \(seq) "), "record \(seq) holds message \(message.prefix(30))")
        seqs.append(seq)
    }
    return seqs
}

/// What reading a run chunk after chunk found.
struct ReadOutcome: Equatable {
    var seqs: [UInt64] = []
    var gaps: [ClosedRange<UInt64>] = []
    var chunks = 0
}

/// Reads `id` from `seq` to `bound` in chunks of about `maxBytes`, as a replay would.
func readAll(_ store: FileRunStore, _ id: RunID, from seq: UInt64 = 1, through bound: UInt64 = .max,
             maxBytes: Int = 64 << 10) async throws -> ReadOutcome {
    var outcome = ReadOutcome()
    var next = seq
    while next <= bound {
        switch try await store.read(id, from: next, through: bound, maxBytes: maxBytes, on: testLoop).get() {
        case .records(let batch):
            #expect(batch.firstSeq == next)
            outcome.seqs += seqs(of: batch)
            outcome.chunks += 1
            next = batch.lastSeq + 1
        case .gap(let from, let to):
            #expect(from == next && to >= from)
            outcome.gaps.append(from...to)
            next = to + 1
        case .none:
            return outcome
        }
    }
    return outcome
}

/// Appends `batches` and waits until the last is written.
func appendAndWait(_ store: FileRunStore, _ id: RunID, _ batches: [Batch], offsets: [String: UInt64] = [:]) async throws {
    for batch in batches { store.append(batch, to: id, publisherOffsets: offsets) }
    if let last = batches.last { try await store.whenWritten(id, through: last.lastSeq, on: testLoop).get() }
}

/// Batches of `perBatch` records covering `seqs`.
func batches(_ seqs: ClosedRange<UInt64>, perBatch: Int, messageBytes: Int = 100) -> [Batch] {
    stride(from: seqs.lowerBound, through: seqs.upperBound, by: perBatch).map { first in
        makeBatch(firstSeq: first, count: Int(min(UInt64(perBatch), seqs.upperBound - first + 1)), messageBytes: messageBytes)
    }
}

/// The names in a folder, sorted.
func fileNames(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

/// The size of a file, or -1 when it does not exist.
func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
}
