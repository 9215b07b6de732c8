import TailgateCore

/// Where the store keeps what: `DIR/runs/<worker-id>/<epoch>/` holds one run's `manifest.json`, its
/// segments `<first seq, 20 digits>.seg` and each segment's sparse index `<first seq>.idx`.
///
/// Worker ids may hold `:` and `.`, which are plain characters of a path component on Linux; they never
/// hold `/` and never start with `.` (see `WorkerID`), and epochs are `[a-z0-9]`.
struct StoreLayout: Sendable {
    /// The data directory.
    let root: String

    /// The folder holding every worker's runs.
    var runsPath: String { root + "/runs" }

    /// The folder holding the runs of `worker`.
    func workerPath(_ worker: WorkerID) -> String { runsPath + "/" + worker.rawValue }

    /// The folder of one run.
    func runPath(_ id: RunID) -> String { workerPath(id.worker) + "/" + id.epoch }

    /// The run's manifest.
    func manifestPath(_ id: RunID) -> String { runPath(id) + "/" + Self.manifestName }

    /// The segment of `id` whose first record has `firstSeq`.
    func segmentPath(_ id: RunID, firstSeq: UInt64) -> String { Self.segmentPath(inRun: runPath(id), firstSeq: firstSeq) }

    /// The sparse index of that segment.
    func indexPath(_ id: RunID, firstSeq: UInt64) -> String { Self.indexPath(inRun: runPath(id), firstSeq: firstSeq) }

    static let manifestName = "manifest.json"
    static let segmentExtension = ".seg"
    static let indexExtension = ".idx"

    static func segmentPath(inRun runPath: String, firstSeq: UInt64) -> String {
        runPath + "/" + fileStem(firstSeq) + segmentExtension
    }

    static func indexPath(inRun runPath: String, firstSeq: UInt64) -> String {
        runPath + "/" + fileStem(firstSeq) + indexExtension
    }

    /// The 20-digit, zero-padded seq that names a segment, so that names sort like seqs.
    static func fileStem(_ firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The first seq named by a segment's file name, or `nil` when `name` is not a segment's.
    static func segmentFirstSeq(fromName name: String) -> UInt64? {
        guard name.hasSuffix(segmentExtension) else { return nil }
        let stem = name.utf8.dropLast(segmentExtension.utf8.count)
        guard stem.count == 20, stem.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(String(decoding: stem, as: UTF8.self))
    }
}
