import Foundation
import TailgateCore

/// A run's `manifest.json`: what the run is and how it ended, plus the counters that spare a reopening
/// store from reading segments, and the publishers' offsets as of a seq.
///
/// ```json
/// {"format":1,"worker":"job-42","epoch":"2guf0xf4wukt0","owner":"remote",
///  "started_at":"2026-11-30T03:02:11.120000Z","stopped_at":null,"status":"running","exit_code":null,
///  "reason":null,"first_seq":1,"last_seq":20000,"stored_bytes":4123456,
///  "publisher_offsets":{"run-7f3a":125},"offsets_through_seq":20000}
/// ```
///
/// It is rewritten whole and atomically (temporary file and rename) when the run begins, rolls to a new
/// segment, ends, resumes, and when the store closes. Off the hot path, so Foundation's JSON is fine.
struct RunManifest: Sendable, Equatable {
    var info: RunInfo
    /// Each publisher's highest offset in the frames up to `offsetsThroughSeq`; frames after it carry
    /// the newer ones.
    var publisherOffsets: [String: UInt64]
    /// The last seq whose frames' offsets `publisherOffsets` includes.
    var offsetsThroughSeq: UInt64

    init(info: RunInfo, publisherOffsets: [String: UInt64] = [:], offsetsThroughSeq: UInt64 = 0) {
        self.info = info
        self.publisherOffsets = publisherOffsets
        self.offsetsThroughSeq = offsetsThroughSeq
    }

    /// The JSON text.
    func encoded() throws(StoreError) -> Data {
        func optional(_ value: Any?) -> Any { value ?? NSNull() }
        let object: [String: Any] = [
            "format": NSNumber(value: 1),
            "worker": info.id.worker.rawValue,
            "epoch": info.id.epoch,
            "owner": info.owner.rawValue,
            "started_at": info.startedAt.description,
            "stopped_at": optional(info.stoppedAt?.description),
            "status": info.status.rawValue,
            "exit_code": optional(info.exitCode.map { NSNumber(value: $0) }),
            "reason": optional(info.reason),
            "first_seq": NSNumber(value: info.firstSeq),
            "last_seq": NSNumber(value: info.lastSeq),
            "stored_bytes": NSNumber(value: info.storedBytes),
            "publisher_offsets": publisherOffsets.mapValues { NSNumber(value: $0) },
            "offsets_through_seq": NSNumber(value: offsetsThroughSeq),
        ]
        do {
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        } catch {
            throw .corrupt(path: "manifest of \(info.id)", reason: "cannot encode: \(error)")
        }
    }

    /// Parses a manifest read from `path`; throws `StoreError.corrupt` saying what is wrong.
    static func decode(_ data: Data, path: String) throws(StoreError) -> RunManifest {
        func corrupt(_ reason: String) -> StoreError { .corrupt(path: path, reason: reason) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw corrupt("not a JSON object")
        }
        guard let workerText = object["worker"] as? String, let worker = WorkerID(workerText) else { throw corrupt("bad worker") }
        guard let epoch = object["epoch"] as? String, RunID.isValidEpoch(epoch) else { throw corrupt("bad epoch") }
        guard let ownerText = object["owner"] as? String, let owner = WorkerOwner(rawValue: ownerText) else { throw corrupt("bad owner") }
        guard let startedText = object["started_at"] as? String, let startedAt = Timestamp(iso8601: startedText) else {
            throw corrupt("bad started_at")
        }
        guard let statusText = object["status"] as? String, let status = RunStatus(rawValue: statusText) else { throw corrupt("bad status") }
        var stoppedAt: Timestamp?
        if let stoppedText = object["stopped_at"] as? String {
            guard let parsed = Timestamp(iso8601: stoppedText) else { throw corrupt("bad stopped_at") }
            stoppedAt = parsed
        }
        let lastSeq = number(object["last_seq"]) ?? 0
        var info = RunInfo(id: RunID(worker: worker, epoch: epoch), owner: owner, startedAt: startedAt, stoppedAt: stoppedAt,
                           status: status, exitCode: signed(object["exit_code"]).map { Int($0) }, reason: object["reason"] as? String,
                           firstSeq: number(object["first_seq"]) ?? 1, lastSeq: lastSeq,
                           storedBytes: Int(clamping: number(object["stored_bytes"]) ?? 0))
        if info.firstSeq > info.lastSeq + 1 { info.firstSeq = info.lastSeq + 1 }
        var offsets: [String: UInt64] = [:]
        if let stored = object["publisher_offsets"] as? [String: Any] {
            for (publisher, value) in stored {
                guard let offset = number(value) else { throw corrupt("bad offset of publisher \(publisher)") }
                offsets[publisher] = offset
            }
        }
        return RunManifest(info: info, publisherOffsets: offsets, offsetsThroughSeq: number(object["offsets_through_seq"]) ?? 0)
    }

    /// Reads the manifest of the run in folder `runPath`; `nil` when it has none (or an empty one: the
    /// rename of a manifest outlived its content in a machine crash).
    static func read(runPath: String) throws(StoreError) -> RunManifest? {
        let path = runPath + "/" + StoreLayout.manifestName
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(path)
        } catch where error.isNotFound {
            return nil
        }
        guard !bytes.isEmpty else { return nil }
        return try decode(Data(bytes), path: path)
    }

    /// Replaces the manifest of the run in folder `runPath` atomically.
    func write(runPath: String, sync: Bool) throws(StoreError) {
        try FileSystem.replace(runPath + "/" + StoreLayout.manifestName, with: encoded(), sync: sync)
    }

    private static func number(_ value: Any?) -> UInt64? {
        guard let value = signed(value), value >= 0 else { return nil }
        return UInt64(value)
    }

    private static func signed(_ value: Any?) -> Int64? {
        switch value {
        case let number as NSNumber: return number.int64Value
        case let number as Int: return Int64(number)
        case let number as Int64: return number
        case let number as UInt64: return Int64(exactly: number)
        case let number as Double: return Int64(exactly: number)
        default: return nil
        }
    }
}
