import TailgateCore
import TailgateRedis

/// A run's manifest as a Redis hash: `worker`, `epoch`, `owner`, `started_at` and `stopped_at` (µs
/// since 1970), `status`, `exit_code`, `reason`, `first_seq`, `last_seq`, `stored_bytes`.
enum RedisManifest {
    /// The `RunInfo` in an `HGETALL` reply (RESP2 array of fields and values, or a RESP3 map); `nil`
    /// when the hash is missing or not a manifest.
    static func decode(_ reply: RESPValue, id: RunID) -> RunInfo? {
        guard let items = reply.array, !items.isEmpty, items.count % 2 == 0 else { return nil }
        var fields: [String: String] = [:]
        for index in stride(from: 0, to: items.count, by: 2) {
            guard let key = items[index].string, let value = items[index + 1].string else { continue }
            fields[key] = value
        }
        guard let startedText = fields["started_at"], let started = Int64(startedText) else { return nil }
        let owner = fields["owner"].flatMap(WorkerOwner.init(rawValue:)) ?? .remote
        let status = fields["status"].flatMap(RunStatus.init(rawValue:)) ?? .running
        let lastSeq = fields["last_seq"].flatMap { UInt64($0) } ?? 0
        var info = RunInfo(id: id, owner: owner, startedAt: Timestamp(microseconds: started),
                           stoppedAt: fields["stopped_at"].flatMap { Int64($0) }.map(Timestamp.init(microseconds:)),
                           status: status, exitCode: fields["exit_code"].flatMap { Int($0) }, reason: fields["reason"],
                           firstSeq: fields["first_seq"].flatMap { UInt64($0) } ?? 1, lastSeq: lastSeq,
                           storedBytes: fields["stored_bytes"].flatMap { Int($0) }.map { max(0, $0) } ?? 0)
        if info.firstSeq > info.lastSeq + 1 { info.firstSeq = info.lastSeq + 1 }
        return info
    }

    /// Publisher offsets from an `HGETALL` reply of the offsets hash.
    static func offsets(_ reply: RESPValue) -> [String: UInt64] {
        guard let items = reply.array else { return [:] }
        var offsets: [String: UInt64] = [:]
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            guard let publisher = items[index].string, let offset = items[index + 1].string.flatMap({ UInt64($0) }) else { continue }
            offsets[publisher] = offset
        }
        return offsets
    }
}
