import TailgateCore

/// The files of one run's folder, from a directory listing (no segment is opened).
struct RunFiles {
    /// One segment file.
    struct Segment {
        var firstSeq: UInt64
        var bytes: Int
        var indexBytes: Int
        var modified: Timestamp
    }

    /// The segments, oldest (lowest first seq) first.
    var segments: [Segment]
    /// Whether the folder holds a `manifest.json`.
    var hasManifest: Bool

    /// Bytes of the segments and their indexes.
    var storedBytes: Int { segments.reduce(0) { $0 + $1.bytes + $1.indexBytes } }

    /// The segments as readers see them (indexes not loaded).
    var segmentStates: [SegmentState] { segments.map { SegmentState(firstSeq: $0.firstSeq, bytes: $0.bytes, index: nil) } }

    /// Lists the folder `runPath`.
    static func list(_ runPath: String) throws(StoreError) -> RunFiles {
        var segments: [Segment] = []
        var hasManifest = false
        for name in try FileSystem.list(runPath) {
            if name == StoreLayout.manifestName {
                hasManifest = true
                continue
            }
            guard let firstSeq = StoreLayout.segmentFirstSeq(fromName: name) else { continue }
            guard let status = try FileSystem.status(of: runPath + "/" + name) else { continue }
            let indexBytes = try FileSystem.status(of: StoreLayout.indexPath(inRun: runPath, firstSeq: firstSeq))?.size ?? 0
            segments.append(Segment(firstSeq: firstSeq, bytes: status.size, indexBytes: indexBytes, modified: status.modified))
        }
        segments.sort { $0.firstSeq < $1.firstSeq }
        return RunFiles(segments: segments, hasManifest: hasManifest)
    }

    /// Deletes a segment and its index.
    static func removeSegment(inRun runPath: String, firstSeq: UInt64) throws(StoreError) {
        try FileSystem.removeFile(StoreLayout.segmentPath(inRun: runPath, firstSeq: firstSeq))
        try FileSystem.removeFile(StoreLayout.indexPath(inRun: runPath, firstSeq: firstSeq))
    }
}
