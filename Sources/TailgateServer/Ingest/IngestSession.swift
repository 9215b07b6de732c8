#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import TailgateCore

/// One `POST /api/workers/{id}/records` body being published, line by line, as it arrives.
///
/// Lines are split incrementally, so a body that stays open for hours publishes each line as soon as
/// its newline arrives. A bad line is rejected and counted (its first few reasons are reported), the
/// lines around it are published. A line over the size limit is rejected without being buffered.
///
/// A publisher that numbers its lines (`Tailgate-Publisher`, `Tailgate-Offset`: docs/PROTOCOL.md,
/// "Publishing exactly once") has every line of the body — blank, rejected and oversized ones too —
/// take the next offset; a line at or below the publisher's offset in the run is skipped as a
/// duplicate, before it is decoded (and again under the worker's lock, against concurrent bodies).
final class IngestSession {
    enum Format {
        case ndjson
        case text
    }

    struct LineError {
        var line: Int
        var message: String
    }

    let worker: Worker
    let format: Format
    let maxLineBytes: Int
    /// The publisher numbering its lines, if any.
    let publisher: String?
    /// The offset the next line of the body takes.
    @exclusivity(unchecked) private var nextOffset: UInt64
    /// The publisher's offset in the run when the body began: lines up to it are duplicates.
    private let knownOffset: UInt64
    /// The last offset handed to the worker.
    private var flushedOffset: UInt64
    private(set) var duplicates = 0
    private(set) var accepted = 0
    private(set) var rejected = 0
    private(set) var firstSeq: UInt64?
    private(set) var lastSeq: UInt64?
    private(set) var errors: [LineError] = []
    /// Where accepted, rejected and duplicate lines are also counted (per hand-over, not per line).
    private let statistics: GatewayStatistics?
    @exclusivity(unchecked) private var partial = ByteBuffer()
    @exclusivity(unchecked) private var discardingLongLine = false
    /// Input not processed yet because the worker's queue was full.
    @exclusivity(unchecked) private var stash = ByteBuffer()
    static let reportedErrors = 10

    /// `publisher`: the publisher's id and the offset of the body's first line (`nil`: right after
    /// the publisher's offset in the run).
    init(worker: Worker, format: Format, maxLineBytes: Int, publisher: (id: String, firstOffset: UInt64?)? = nil,
         statistics: GatewayStatistics? = nil) {
        self.worker = worker
        self.statistics = statistics
        self.format = format
        self.maxLineBytes = maxLineBytes
        self.publisher = publisher?.id
        let known = publisher.map { worker.publisherOffset($0.id) } ?? 0
        knownOffset = known
        nextOffset = publisher?.firstOffset ?? known + 1
        flushedOffset = nextOffset - 1
        worker.publisherConnection(opened: true)
    }

    private var closed = false

    /// The publisher's connection is done with this body (ended, refused or gone): the worker no longer
    /// counts it as a connected publisher. Calling it again does nothing.
    func close() {
        guard !closed else { return }
        closed = true
        worker.publisherConnection(opened: false)
    }

    /// Whether input waits for the worker's queue to drain.
    var isHoldingInput: Bool { stash.readableBytes > 0 }

    /// Takes a piece of the body. Returns `false` when it stopped early because the worker's queue
    /// holds `queueLimit` records or more: call `resume` once it has drained.
    func consume(_ buffer: inout ByteBuffer, queueLimit: Int) -> Bool {
        if stash.readableBytes > 0 {
            stash.writeBuffer(&buffer)
            return resume(queueLimit: queueLimit)
        }
        let done = process(&buffer, queueLimit: queueLimit)
        if !done { stash.writeBuffer(&buffer) }
        return done
    }

    /// Continues with held input; `false` when it had to stop again.
    func resume(queueLimit: Int) -> Bool {
        var held = stash
        stash = ByteBuffer()
        let done = process(&held, queueLimit: queueLimit)
        if !done { stash = held }
        return done
    }

    private func process(_ buffer: inout ByteBuffer, queueLimit: Int) -> Bool {
        // The common case — whole lines, none too long, nothing left over from the previous read — is
        // decoded straight from the read's bytes, through one pointer access for the whole read (each
        // access to a `ByteBuffer`'s storage is an exclusivity check in NIO code inlined here:
        // Benchmarks/results/FINDINGS.md). The rest, and whatever follows a stop, goes line by line below.
        if partial.readableBytes == 0 && !discardingLongLine {
            let (consumed, stopped) = processWholeLines(buffer, queueLimit: queueLimit)
            buffer.moveReaderIndex(forwardBy: consumed)
            if stopped { return false }
        }
        while buffer.readableBytes > 0 {
            guard let newline = Self.newlineIndex(in: buffer) else {
                appendPartial(buffer.readSlice(length: buffer.readableBytes)!)
                break
            }
            var piece = buffer.readSlice(length: newline - buffer.readerIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            let offset = nextOffset
            nextOffset += 1
            if discardingLongLine {
                discardingLongLine = false
                partial.clear()
                continue
            }
            if partial.readableBytes > 0 {
                appendPartial(piece)
                if discardingLongLine {
                    discardingLongLine = false
                    partial.clear()
                    continue
                }
                piece = partial
                partial = ByteBuffer()
            } else if piece.readableBytes > maxLineBytes {
                pending.lineNumber += 1
                reject("line exceeds the limit of \(maxLineBytes) bytes")
                continue
            }
            publish(piece, offset: offset)
            if pending.records.count >= Self.recordsPerEnqueue, flush() >= queueLimit, buffer.readableBytes > 0 { return false }
        }
        flush()
        return true
    }

    /// Decodes and publishes the whole lines at the start of `buffer` that fit the size limit, reading
    /// them in place; stops at the first line that does not end in this read or is too long. Returns
    /// the bytes consumed, and whether it stopped because the worker's queue is full (more input left).
    private func processWholeLines(_ buffer: ByteBuffer, queueLimit: Int) -> (consumed: Int, stopped: Bool) {
        buffer.withUnsafeReadableBytes { raw -> (Int, Bool) in
            guard let base = raw.baseAddress else { return (0, false) }
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            var start = 0
            while start < raw.count {
                guard let found = memchr(base + start, 0x0A, raw.count - start) else { break }
                let end = UnsafeRawPointer(found) - base
                guard end - start <= maxLineBytes else { break }
                let offset = nextOffset
                nextOffset += 1
                let line = UnsafeBufferPointer(start: bytes + start, count: end - start)
                start = end + 1
                if publisher != nil && offset <= knownOffset {
                    duplicates += 1
                    statistics?.ingestDuplicates.add(1, ordering: .relaxed)
                } else if let rejection = pending.decode(line, format: format, offset: publisher != nil ? offset : nil) {
                    reject(rejection.message)
                }
                if pending.records.count >= Self.recordsPerEnqueue, flush() >= queueLimit, start < raw.count { return (start, true) }
            }
            return (start, false)
        }
    }

    /// Decoded records not yet handed to the worker, and their line numbers (for a stopped worker's
    /// rejections): each read's lines go to the worker's queue together, under one lock.
    ///
    /// Everything a line changes is in this one stored property and changed by one mutating call
    /// (`Decoded.decode`), which reads the line's bytes through one pointer access: each access to a
    /// class's stored property (ours, or `ByteBuffer`'s storage in NIO code inlined here) is checked
    /// for exclusivity at run time (Benchmarks/results/FINDINGS.md).
    // Touched for every line, only on the connection's loop: no run-time exclusivity checks (FINDINGS.md).
    @exclusivity(unchecked) private var pending = Decoded()

    private struct Decoded {
        var records: [LogRecord] = []
        var repeatedValues = RecordDecoder.RepeatedValues()
        var lines: [Int] = []
        /// The offsets of `records` (publishers that number their lines).
        var offsets: [UInt64] = []
        /// The body's current line (blank lines of an NDJSON body aside).
        var lineNumber = 0

        /// Counts the line and decodes it into `records` (a trailing CR dropped; a blank NDJSON line is
        /// skipped, not counted); returns why it was rejected, if it was.
        mutating func decode(_ line: ByteBuffer, format: Format, offset: UInt64?) -> RecordDecoder.Rejection? {
            line.withUnsafeReadableBytes { raw in decode(raw.bindMemory(to: UInt8.self), format: format, offset: offset) }
        }

        /// `decode` of a line's bytes in place.
        mutating func decode(_ line: UnsafeBufferPointer<UInt8>, format: Format, offset: UInt64?) -> RecordDecoder.Rejection? {
            var blank = false
            let rejection = { () -> RecordDecoder.Rejection? in
                var bytes = line
                if bytes.last == UInt8(ascii: "\r") { bytes = UnsafeBufferPointer(rebasing: bytes.dropLast()) }
                if format == .ndjson && !bytes.contains(where: { $0 != 0x20 && $0 != 0x09 }) {
                    blank = true
                    return nil
                }
                lineNumber += 1
                do throws(RecordDecoder.Rejection) {
                    // Appended straight from the decoder: the record is moved into the queue, not copied.
                    records.append(format == .ndjson ? try RecordDecoder.decodeJSONLine(bytes, reusing: &repeatedValues)
                                                     : try RecordDecoder.decodeTextLine(bytes))
                    return nil
                } catch {
                    return error
                }
            }()
            if rejection == nil && !blank {
                lines.append(lineNumber)
                if let offset { offsets.append(offset) }
            }
            return rejection
        }
    }
    static let recordsPerEnqueue = 64

    /// Hands the decoded records to the worker; returns the worker's queue length.
    @discardableResult
    private func flush() -> Int {
        let lastOffset = nextOffset - 1
        guard !pending.records.isEmpty || (publisher != nil && lastOffset > flushedOffset) else { return 0 }
        defer {
            pending.lines.removeAll(keepingCapacity: true)
            pending.offsets.removeAll(keepingCapacity: true)
        }
        let lines = publisher.map { Worker.NumberedLines(publisher: $0, offsets: pending.offsets, lastOffset: lastOffset) }
        flushedOffset = lastOffset
        guard let outcome = worker.enqueue(contentsOf: &pending.records, lines: lines) else {
            for line in pending.lines { reject("worker '\(worker.id)' has stopped", line: line) }
            return 0
        }
        accepted += outcome.published
        duplicates += outcome.duplicates
        statistics?.ingestAccepted.add(outcome.published, ordering: .relaxed)
        if outcome.duplicates > 0 { statistics?.ingestDuplicates.add(outcome.duplicates, ordering: .relaxed) }
        if outcome.published > 0 {
            if firstSeq == nil { firstSeq = outcome.firstSeq }
            lastSeq = outcome.firstSeq + UInt64(outcome.published) - 1
        }
        return outcome.queued
    }

    private func appendPartial(_ piece: ByteBuffer) {
        guard !discardingLongLine else { return }
        var piece = piece
        if partial.readableBytes + piece.readableBytes > maxLineBytes {
            pending.lineNumber += 1
            reject("line exceeds the limit of \(maxLineBytes) bytes")
            discardingLongLine = true
            partial.clear()
            return
        }
        partial.writeBuffer(&piece)
    }

    /// Decodes one line and queues its record for `flush` (or rejects it, or skips it as a duplicate).
    private func publish(_ line: ByteBuffer, offset: UInt64) {
        if publisher != nil && offset <= knownOffset {
            duplicates += 1
            statistics?.ingestDuplicates.add(1, ordering: .relaxed)
            return
        }
        if let rejection = pending.decode(line, format: format, offset: publisher != nil ? offset : nil) {
            reject(rejection.message)
        }
    }

    private func reject(_ message: String, line: Int? = nil) {
        rejected += 1
        statistics?.ingestRejected.add(1, ordering: .relaxed)
        if errors.count < Self.reportedErrors { errors.append(LineError(line: line ?? pending.lineNumber, message: message)) }
    }

    /// The absolute index of the first newline in `buffer`'s readable bytes.
    private static func newlineIndex(in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, let found = memchr(base, 0x0A, bytes.count) else { return nil }
            return buffer.readerIndex + (UnsafeRawPointer(found) - base)
        }
    }

    /// Publishes a last line that had no newline.
    func finish() {
        if discardingLongLine || partial.readableBytes == 0 {
            if discardingLongLine { nextOffset += 1 }
            flush()
            return
        }
        let last = partial
        partial = ByteBuffer()
        let offset = nextOffset
        nextOffset += 1
        publish(last, offset: offset)
        flush()
    }

    /// `{"accepted":N,"rejected":M,"duplicates":D,"first_seq":A,"last_seq":B,"errors":[…],"epoch":E}`,
    /// and `"publisher":P,"offset":K` for a publisher that numbers its lines.
    func summary() -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 256)
        out.writeStaticString("{\"accepted\":")
        out.writeJSONInteger(accepted)
        out.writeStaticString(",\"rejected\":")
        out.writeJSONInteger(rejected)
        out.writeStaticString(",\"duplicates\":")
        out.writeJSONInteger(duplicates)
        out.writeStaticString(",\"first_seq\":")
        out.writeJSONIntegerOrNull(firstSeq)
        out.writeStaticString(",\"last_seq\":")
        out.writeJSONIntegerOrNull(lastSeq)
        out.writeStaticString(",\"errors\":[")
        for (index, error) in errors.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString("{\"line\":")
            out.writeJSONInteger(error.line)
            out.writeStaticString(",\"message\":")
            out.writeJSONString(error.message)
            out.writeStaticString("}")
        }
        out.writeStaticString("],\"epoch\":")
        out.writeJSONString(worker.epoch)
        if let publisher {
            out.writeStaticString(",\"publisher\":")
            out.writeJSONString(publisher)
            out.writeStaticString(",\"offset\":")
            out.writeJSONInteger(worker.publisherOffset(publisher))
        }
        out.writeStaticString("}\n")
        return out
    }
}
