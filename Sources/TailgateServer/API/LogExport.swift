import NIOCore
import TailgateCore

/// `GET /api/workers/{id}/logs` and `GET /api/workers/{id}/runs/{epoch}/logs`: a run's records as
/// NDJSON (the stored bytes, one per line) or as console text (`timestamp LEVEL logger: message`),
/// filtered by seq, time and level.
///
/// The export is streamed: each `nextChunk` reads the next records — from the ring, or from the store
/// off the loop when they left the ring — and renders about `chunkBytes` of output, so its memory does
/// not depend on the run's size. The range is fixed when the request arrives (records published later
/// are not included).
///
/// `@unchecked Sendable`: an export belongs to one connection and is only touched on its loop — the
/// store's reads complete there too — so its futures' closures never run concurrently.
final class LogExport: @unchecked Sendable {
    enum Format: String {
        case ndjson
        case text
    }

    /// What a record must be to be exported.
    struct Filter {
        /// ISO-8601 text of the earliest timestamp (inclusive) and the latest (exclusive): the records'
        /// timestamps have this fixed-width form, so comparing the bytes compares the times.
        var from: [UInt8]?
        var to: [UInt8]?
        var minimumLevel: LogLevel?

        var isEmpty: Bool { from == nil && to == nil && minimumLevel == nil }

        /// Whether `record` (its JSON, fields in the encoder's fixed order) passes.
        func admits(_ record: ByteBuffer) -> Bool {
            record.withUnsafeReadableBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                guard let fields = RecordFields(bytes) else { return true }
                if let from, fields.timestamp.lexicographicallyPrecedes(from) { return false }
                if let to, !fields.timestamp.lexicographicallyPrecedes(to) { return false }
                if let minimumLevel, let level = LogLevel(nameUTF8: fields.level), level < minimumLevel {
                    return false
                }
                return true
            }
        }
    }

    let source: StreamSource
    let format: Format
    let filter: Filter
    let headers: [(String, String)]
    /// The next seq to read, and the last one of the export.
    private var position: UInt64
    private let lastSeq: UInt64
    /// Records still to give (`limit`), and matching records still to skip (newest N with a filter).
    private var remaining: Int?
    private var toSkip: Int

    static let chunkBytes = 256 << 10

    private init(source: StreamSource, format: Format, filter: Filter, headers: [(String, String)], from: UInt64, through: UInt64,
                 limit: Int?, skip: Int) {
        self.source = source
        self.format = format
        self.filter = filter
        self.headers = headers
        self.position = from
        self.lastSeq = through
        self.remaining = limit
        self.toSkip = skip
    }

    /// Checks the request and fixes what to export. `epoch`: a run by path; `nil`: the current run.
    static func start(_ request: Request, id: WorkerID, run epoch: String?, gateway: GatewayContext) throws(GatewayError) -> LogExport {
        try request.requireGET()
        try APIEndpoints.requireRead(request, on: id, gateway: gateway)
        let target = request.target
        let since = try target.unsignedValue("since")
        let limit = try target.unsignedValue("limit", max: 10_000_000).map { Int($0) }
        let formatText = target.value("format") ?? "ndjson"
        guard let format = Format(rawValue: formatText) else {
            throw .badParameter("format", "expected 'ndjson' or 'text', got '\(formatText.prefix(40))'")
        }
        let download = target.value("download")
        guard download == nil || download == "0" || download == "1" else {
            throw .badParameter("download", "expected 0 or 1")
        }
        var filter = Filter()
        for (name, keyPath) in [("from", \Filter.from), ("to", \Filter.to)] {
            guard let text = target.value(name) else { continue }
            guard let time = Timestamp(iso8601: text) else {
                throw .badParameter(name, "expected an ISO-8601 time such as 2026-11-30T03:00:00Z")
            }
            filter[keyPath: keyPath] = Array(time.description.utf8)
        }
        if let text = target.value("level") {
            guard let level = LogLevel(name: text) else {
                throw .badParameter("level", "expected one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.minimumLevel = level
        }
        let source = try StreamEndpoint.source(id: id, run: epoch, gateway: gateway)
        let snapshot = source.snapshot()
        var from = max(snapshot.firstSeq, since.map { $0 + 1 } ?? 0)
        var skip = 0
        if since == nil, let limit {
            if filter.isEmpty {
                if snapshot.lastSeq + 1 - from > UInt64(limit) { from = snapshot.lastSeq + 1 - UInt64(limit) }
            } else {
                // The newest N matching: counted in a first pass over the run, see `countMatches`.
                skip = -1
            }
        }
        var headers: [(String, String)] = [
            ("Content-Type", format == .ndjson ? "application/x-ndjson; charset=utf-8" : "text/plain; charset=utf-8"),
            ("Cache-Control", "no-store"),
        ]
        if download == "1" {
            let name = String(id.rawValue.map { $0 == ":" ? "_" : $0 }) + (epoch.map { "-" + $0 } ?? "")
            headers.append(("Content-Disposition", "attachment; filename=\"\(name).\(format == .ndjson ? "ndjson" : "log")\""))
        }
        return LogExport(source: source, format: format, filter: filter, headers: headers, from: from, through: snapshot.lastSeq,
                         limit: limit, skip: skip)
    }

    /// The next piece of the body, or `nil` when the export is complete.
    func nextChunk(on loop: EventLoop) -> EventLoopFuture<ByteBuffer?> {
        if toSkip < 0 {
            // Newest N with a filter: count the matches once, then skip all but the last N.
            let start = position
            matches = 0
            return walk(on: loop, until: { false }) { self.matches += self.count($0) }.flatMap {
                self.position = start
                self.toSkip = max(0, self.matches - (self.remaining ?? self.matches))
                return self.nextChunk(on: loop)
            }
        }
        chunk = ByteBufferAllocator().buffer(capacity: 4096)
        return walk(on: loop, until: { self.remaining == 0 || self.chunk.readableBytes >= Self.chunkBytes }) { self.render($0) }.map {
            let out = self.chunk
            self.chunk = ByteBuffer()
            return out.readableBytes > 0 ? out : nil
        }
    }

    /// Whether every record of the export has been rendered.
    var isDone: Bool { toSkip >= 0 && (position > lastSeq || remaining == 0) }

    /// The chunk being rendered, and the matches counted so far (newest N with a filter).
    private var chunk = ByteBuffer()
    private var matches = 0

    /// Hands `use` each batch from `position` to the end of the range, until `enough()`: the ring's at
    /// once, the store's when its read (off the loop) completes. Records that neither holds (retention
    /// or a failed disk lost them) are skipped.
    private func walk(on loop: EventLoop, until enough: @escaping @Sendable () -> Bool, _ use: @escaping @Sendable (Batch) -> Void) -> EventLoopFuture<Void> {
        while position <= lastSeq && !enough() {
            switch source.read(at: position) {
            case .batch(let batch):
                use(batch)
            case .gap(_, let to):
                position = to + 1
            case .caughtUp:
                position = lastSeq + 1
            case .stored(_, let storedThrough):
                let through = min(storedThrough, lastSeq)
                guard let store = source.store else {
                    position = through + 1
                    continue
                }
                return store.read(source.runID, from: position, through: through, maxBytes: Self.chunkBytes, on: loop)
                    .flatMapErrorThrowing { _ in StoredChunk.none }
                    .flatMap { stored in
                        switch stored {
                        case .records(let batch) where batch.firstSeq >= self.position:
                            use(batch)
                        case .gap(_, let to) where to >= self.position:
                            self.position = min(to, through) + 1
                        default:
                            self.position = through + 1
                        }
                        return self.walk(on: loop, until: enough, use)
                    }
            }
        }
        return loop.makeSucceededVoidFuture()
    }

    /// Appends the records of `batch` from `position` on (no further than the export's range) that pass
    /// the filter to `chunk`, and moves `position` past them.
    private func render(_ batch: Batch) {
        var seq = max(position, batch.firstSeq)
        let end = min(batch.lastSeq, lastSeq)
        while seq <= end, remaining != 0 {
            let record = batch.record(seq)
            seq += 1
            if !filter.isEmpty && !filter.admits(record) { continue }
            if toSkip > 0 {
                toSkip -= 1
                continue
            }
            switch format {
            case .ndjson:
                chunk.writeImmutableBuffer(record)
                chunk.writeStaticString("\n")
            case .text:
                Self.writeText(record, into: &chunk)
            }
            if let count = remaining { remaining = count - 1 }
        }
        position = seq
    }

    /// Counts the records of `batch` from `position` on that pass the filter, and moves `position` past them.
    private func count(_ batch: Batch) -> Int {
        var seq = max(position, batch.firstSeq)
        let end = min(batch.lastSeq, lastSeq)
        var matches = 0
        while seq <= end {
            if filter.admits(batch.record(seq)) { matches += 1 }
            seq += 1
        }
        position = seq
        return matches
    }

    /// One console line: `2026-11-27T13:16:40.123456Z INFO    logger: message`.
    static func writeText(_ record: ByteBuffer, into out: inout ByteBuffer) {
        let value = record.withUnsafeReadableBytes { raw in
            try? JSONParser.parse(raw.assumingMemoryBound(to: UInt8.self))
        }
        guard let value else { return }
        out.writeString(value["timestamp"]?.stringValue ?? "")
        out.writeStaticString(" ")
        let level = value["level"]?.stringValue ?? "INFO"
        out.writeString(level)
        for _ in level.count..<8 { out.writeStaticString(" ") }
        if let logger = value["logger_name"]?.stringValue, !logger.isEmpty {
            out.writeString(logger)
            out.writeStaticString(": ")
        }
        out.writeString(value["message"]?.stringValue ?? "")
        out.writeStaticString("\n")
    }
}

/// The timestamp and level of an encoded record, found by position: the encoder writes
/// `{"seq":N,"timestamp":"…27 characters…","level":"NAME",…` in this order.
struct RecordFields {
    let timestamp: UnsafeBufferPointer<UInt8>
    let level: UnsafeBufferPointer<UInt8>

    init?(_ bytes: UnsafeBufferPointer<UInt8>) {
        let timestampKey = Array(",\"timestamp\":\"".utf8)
        let levelKey = Array("\",\"level\":\"".utf8)
        var index = 7  // after {"seq":
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
        guard index + timestampKey.count + Timestamp.textLength + levelKey.count < bytes.count,
              bytes[index..<index + timestampKey.count].elementsEqual(timestampKey) else { return nil }
        let timestampStart = index + timestampKey.count
        timestamp = UnsafeBufferPointer(rebasing: bytes[timestampStart..<timestampStart + Timestamp.textLength])
        index = timestampStart + Timestamp.textLength
        guard bytes[index..<index + levelKey.count].elementsEqual(levelKey) else { return nil }
        let levelStart = index + levelKey.count
        var levelEnd = levelStart
        while levelEnd < bytes.count, bytes[levelEnd] != UInt8(ascii: "\"") { levelEnd += 1 }
        level = UnsafeBufferPointer(rebasing: bytes[levelStart..<levelEnd])
    }
}
