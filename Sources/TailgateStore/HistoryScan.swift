import Logging
import TailgateCore

/// Finds the stored runs when the store starts: reads each `runs/<worker>/<epoch>/manifest.json` and
/// nothing else, except for the few runs that were open when the gateway stopped, whose last segment's
/// tail is checked (a torn frame cut off) to learn their true last seq.
///
/// Nothing here stops the store: a folder that is not a run is ignored, a run that cannot be read is
/// logged and skipped, and a run whose manifest is missing is rebuilt from its segments.
enum HistoryScan {
    /// The runs found under `layout`.
    static func scan(_ layout: StoreLayout, logger: Logger) -> [RunID: RunEntry] {
        var runs: [RunID: RunEntry] = [:]
        let workers: [String]
        do {
            workers = try FileSystem.list(layout.runsPath)
        } catch {
            logger.error("cannot list the stored runs", metadata: ["error": "\(error)"])
            return runs
        }
        for workerName in workers {
            guard let worker = WorkerID(workerName) else { continue }
            let epochs = (try? FileSystem.list(layout.workerPath(worker))) ?? []
            for epoch in epochs where RunID.isValidEpoch(epoch) {
                let id = RunID(worker: worker, epoch: epoch)
                do {
                    if let entry = try load(id, layout: layout, logger: logger) { runs[id] = entry }
                } catch {
                    logger.error("skipping a stored run that cannot be read", metadata: ["run": "\(id)", "error": "\(error)"])
                }
            }
        }
        return runs
    }

    private static func load(_ id: RunID, layout: StoreLayout, logger: Logger) throws(StoreError) -> RunEntry? {
        let runPath = layout.runPath(id)
        guard let manifest = try RunManifest.read(runPath: runPath) else {
            return try rebuild(id, runPath: runPath, logger: logger)
        }
        guard manifest.info.id == id else {
            throw .corrupt(path: runPath + "/" + StoreLayout.manifestName, reason: "it names run \(manifest.info.id)")
        }
        var entry = RunEntry(info: manifest.info, isOpen: false)
        if manifest.info.status == .running { recoverInterrupted(&entry, runPath: runPath, logger: logger) }
        return entry
    }

    /// A run that was open when the gateway stopped: its torn tail is cut and its counters taken from
    /// its files. On failure the manifest's counters stand, and reading the run reports the problem.
    private static func recoverInterrupted(_ entry: inout RunEntry, runPath: String, logger: Logger) {
        do {
            let recovered = try RunRecovery.recoverTail(runPath: runPath, logger: logger)
            apply(recovered, to: &entry)
        } catch {
            logger.error("cannot recover an interrupted run", metadata: ["run": "\(entry.info.id)", "error": "\(error)"])
        }
    }

    /// A run folder without a manifest (a crash before the first manifest was written, or a lost file):
    /// what its segments hold is kept as an interrupted run, and its manifest written again.
    private static func rebuild(_ id: RunID, runPath: String, logger: Logger) throws(StoreError) -> RunEntry? {
        let recovered = try RunRecovery.recoverTail(runPath: runPath, logger: logger)
        guard let lastSeq = recovered.lastSeq, let first = recovered.files.segments.first else { return nil }
        var entry = RunEntry(info: RunInfo(id: id, owner: .remote, startedAt: first.modified, status: .interrupted), isOpen: false)
        apply(recovered, to: &entry)
        let offsets = try RunRecovery.publisherOffsets(runPath: runPath, files: recovered.files, lastSeq: lastSeq, manifest: nil)
        do {
            try RunManifest(info: entry.info, publisherOffsets: offsets, offsetsThroughSeq: lastSeq).write(runPath: runPath, sync: true)
        } catch {
            logger.error("cannot write a rebuilt manifest", metadata: ["run": "\(id)", "error": "\(error)"])
        }
        logger.warning("rebuilt a run whose manifest was missing", metadata: ["run": "\(id)", "last_seq": "\(lastSeq)"])
        return entry
    }

    private static func apply(_ recovered: RunRecovery.Result, to entry: inout RunEntry) {
        entry.info.lastSeq = max(entry.info.lastSeq, recovered.lastSeq ?? 0)
        entry.info.firstSeq = recovered.files.segments.first?.firstSeq ?? entry.info.lastSeq + 1
        entry.info.storedBytes = recovered.files.storedBytes
        entry.info.stoppedAt = recovered.lastModified ?? entry.info.stoppedAt ?? entry.info.startedAt
        var segments = recovered.files.segmentStates
        if !segments.isEmpty { segments[segments.count - 1].index = recovered.lastIndex }
        entry.segments = segments
        entry.processedThrough = entry.info.lastSeq
    }
}
