import Foundation
import NIOCore
import Synchronization
import TailgateCore

/// Publishes the queue's records into one worker over a streamed NDJSON body, reconnecting when the
/// gateway goes away, and never sending a record twice.
///
/// **Acknowledgements.** Records go out in bodies of `POST /api/workers/{id}/records`, each record as
/// soon as it is read. A body is ended after `idleSeconds` without input, after `maxBodySeconds`, after
/// `maxBodyRecords`, or when input ends; the gateway's answer (`accepted`, `rejected`, `last_seq`)
/// acknowledges it. Only the records of the current body are ever unacknowledged.
///
/// **Attaching.** On every new connection the publisher first sends an empty body (which creates the
/// worker, and is refused with 403/409 before any record is at stake), then reads the worker's `epoch`
/// and `last_seq`: the incarnation its records are about to enter, and the seq they will follow.
///
/// **When a connection dies with a body unacknowledged**, the publisher reconnects and asks: if the
/// worker still has that epoch, it reads the ring after that seq and finds its records there by
/// timestamp, level, message and stream (the gateway publishes a body's lines in order, so those
/// received are a prefix); the rest were not received and are sent again. If the epoch differs (the
/// gateway restarted, or the worker was stopped) nothing can be known: those records are not re-sent
/// but counted in a `WARNING` record ("N lines could not be confirmed…"). A duplicate is never risked;
/// a possible loss is always reported.
final class GatewayPublisher: Sendable {
    struct Settings: Sendable {
        var gateway: GatewayAddress
        var worker: WorkerID
        var idleSeconds = 1.0
        var maxBodySeconds = 5.0
        var maxBodyRecords = 2000
        var firstBackoff = 0.1
        var maxBackoff = 3.0
        var verbose = false
    }

    /// How publishing ended.
    enum Outcome: Sendable, Equatable {
        case running
        /// Everything was delivered (and the worker stopped, when asked).
        case delivered
        /// The gateway refused (4xx): the message says why.
        case refused(String)
    }

    let settings: Settings
    let queue: OutgoingQueue
    private let state = Lock<(outcome: Outcome, stopWorker: Bool, unconfirmed: Int)>((.running, false, 0))
    private let done = DispatchSemaphore(value: 0)

    init(settings: Settings, queue: OutgoingQueue) {
        self.settings = settings
        self.queue = queue
    }

    private var recordsPath: String { "/api/workers/\(settings.worker.rawValue)/records" }
    private var workerPath: String { "/api/workers/\(settings.worker.rawValue)" }

    // MARK: Control

    /// Checks, before the program starts, that the gateway lets this process publish into the worker.
    /// Returns the refusal's message on a 4xx; a gateway that cannot be reached is no refusal (it is
    /// retried later).
    func preflight() -> String? {
        do {
            let connection = try GatewayConnection(to: settings.gateway, timeout: 3, ioTimeout: 10)
            let answer = try connection.request("POST", recordsPath, contentType: "application/x-ndjson")
            if (400...499).contains(answer.status) { return refusal(answer) }
        } catch {
            report("gateway \(settings.gateway) unreachable (\(error)); buffering up to \(queue.capacity) lines and retrying")
        }
        return nil
    }

    /// Starts the publishing thread; `onEnd` is called on it when publishing has ended (delivered or refused).
    func start(onEnd: @escaping @Sendable () -> Void = {}) {
        Thread.detachNewThread { [self] in
            let outcome = self.publish()
            if case .refused(let message) = outcome { self.report(message) }
            self.state.withLock { $0.outcome = outcome }
            self.done.signal()
            onEnd()
        }
    }

    /// Input has ended: deliver what is left, then (when `stopWorker`) stop the worker.
    func finish(stopWorker: Bool) {
        state.withLock { $0.stopWorker = stopWorker }
        queue.close()
    }

    /// Waits for the end of publishing, at most `timeout` seconds; `.running` when the time ran out.
    func wait(timeout: Double) -> Outcome {
        if done.wait(timeout: .now() + timeout) == .success { done.signal() }
        return state.withLock { $0.outcome }
    }

    /// The outcome so far (`.refused` as soon as the gateway refused).
    var outcome: Outcome { state.withLock { $0.outcome } }

    // MARK: The publishing loop

    /// The records of a body not acknowledged when its connection died.
    private struct Unacknowledged {
        var records: [OutgoingRecord]
        var epoch: String
        var afterSeq: UInt64

        static let none = Unacknowledged(records: [], epoch: "", afterSeq: 0)
    }

    private struct Attachment {
        var connection: GatewayConnection
        var epoch: String
        var lastSeq: UInt64
    }

    private func publish() -> Outcome {
        var attachment: Attachment?
        var unacknowledged: Unacknowledged?
        var backoff = settings.firstBackoff
        var unreachableSince: Double?
        while true {
            let (pending, closed) = queue.status
            if unacknowledged == nil && pending == 0 {
                if closed { break }
                queue.waitForEntries(timeout: nil)
                continue
            }
            do throws(PublishFailure) {
                if attachment == nil || attachment!.connection.isStale || MonotonicClock.now - attachment!.connection.idleSince > 30 {
                    attachment = nil
                    attachment = try attach()
                    if let since = unreachableSince {
                        report("gateway \(settings.gateway) reachable again after \(String(format: "%.1f", MonotonicClock.now - since)) s")
                        unreachableSince = nil
                    }
                    backoff = settings.firstBackoff
                }
                if let lost = unacknowledged {
                    try resolve(lost, with: &attachment!)
                    unacknowledged = nil
                    continue
                }
                try sendBody(with: &attachment!)
            } catch {
                switch error {
                case .refused(let message):
                    return .refused(message)
                case .broken(let description, let unsent):
                    attachment = nil
                    if !unsent.records.isEmpty {
                        if var earlier = unacknowledged {
                            earlier.records += unsent.records  // same epoch and start: resolved together
                            unacknowledged = earlier
                        } else {
                            unacknowledged = unsent
                        }
                    }
                    if unreachableSince == nil {
                        unreachableSince = MonotonicClock.now
                        report("gateway \(settings.gateway): \(description); retrying (buffering up to \(queue.capacity) lines)")
                    } else if settings.verbose {
                        report("gateway \(settings.gateway): \(description); next attempt in \(String(format: "%.1f", backoff)) s")
                    }
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, settings.maxBackoff)
                }
            }
        }
        if state.withLock({ $0.stopWorker }) {
            while true {
                do throws(PublishFailure) {
                    if attachment == nil || attachment!.connection.isStale { attachment = try attach(createWorker: false) }
                    let answer = try call { () throws(ConnectionFailure) in
                        try attachment!.connection.request("POST", workerPath + "/stop")
                    }
                    if answer.status >= 500 { throw PublishFailure.broken("\(answer.status) from the gateway", .none) }
                    if answer.status == 403 || answer.status == 409 { return .refused(refusal(answer)) }
                    if settings.verbose { report("worker '\(settings.worker)' stopped (\(answer.status))") }
                    break
                } catch {
                    if case .refused(let message) = error { return .refused(message) }
                    attachment = nil
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, settings.maxBackoff)
                }
            }
        }
        return .delivered
    }

    private enum PublishFailure: Error {
        /// A 4xx answer: publishing cannot go on.
        case refused(String)
        /// The gateway could not be reached or the connection broke; `unsent` were sent, unacknowledged.
        case broken(String, Unacknowledged)
    }

    private func call<T>(_ body: () throws(ConnectionFailure) -> T) throws(PublishFailure) -> T {
        do {
            return try body()
        } catch {
            throw .broken(error.description, .none)
        }
    }

    /// Opens a connection, creates the worker (an empty body) and reads its epoch and last seq.
    private func attach(createWorker: Bool = true) throws(PublishFailure) -> Attachment {
        let connection = try call { () throws(ConnectionFailure) in try GatewayConnection(to: settings.gateway) }
        if !createWorker { return Attachment(connection: connection, epoch: "", lastSeq: 0) }
        for _ in 0..<3 {
            let created = try call { () throws(ConnectionFailure) in
                try connection.request("POST", recordsPath, contentType: "application/x-ndjson")
            }
            if (400...499).contains(created.status) { throw .refused(refusal(created)) }
            if created.status >= 300 { throw .broken("\(created.status) from the gateway", .none) }
            let answer = try call { () throws(ConnectionFailure) in try connection.request("GET", workerPath) }
            guard answer.status == 200, let worker = try? JSONParser.parse(answer.text),
                  let epoch = worker["epoch"]?.stringValue, let lastSeq = worker["last_seq"]?.intValue else {
                throw .broken("unexpected answer to GET \(workerPath): \(answer.status)", .none)
            }
            // Stopped between the two requests: the next body would make a new incarnation. Again.
            if worker["state"]?.stringValue != "running" { continue }
            if settings.verbose { report("attached to worker '\(settings.worker)' (epoch \(epoch), last seq \(lastSeq))") }
            return Attachment(connection: connection, epoch: epoch, lastSeq: UInt64(max(0, lastSeq)))
        }
        throw .broken("worker '\(settings.worker)' keeps being stopped", .none)
    }

    /// Sends one body of records, as they come, and handles its acknowledgement.
    private func sendBody(with attachment: inout Attachment) throws(PublishFailure) {
        let connection = attachment.connection
        var body = Unacknowledged(records: [], epoch: attachment.epoch, afterSeq: attachment.lastSeq)
        func broken(_ error: ConnectionFailure) -> PublishFailure { .broken(error.description, body) }
        do {
            try connection.startStreamingRequest("POST", recordsPath, contentType: "application/x-ndjson")
        } catch {
            throw broken(error)
        }
        let started = MonotonicClock.now
        var lastInput = started
        while body.records.count < settings.maxBodyRecords {
            let entries = queue.take(max: min(256, settings.maxBodyRecords - body.records.count))
            if entries.isEmpty {
                let now = MonotonicClock.now
                let remaining = min(settings.idleSeconds - (now - lastInput), settings.maxBodySeconds - (now - started))
                if queue.status.closed || remaining <= 0 || connection.hasAnswerWaiting { break }
                queue.waitForEntries(timeout: remaining)
                continue
            }
            var chunk = ByteBufferBuilder()
            for entry in entries {
                let record = entry.record
                body.records.append(record)
                chunk.append(record)
            }
            lastInput = MonotonicClock.now
            do {
                try connection.sendChunk(chunk.bytes)
            } catch {
                throw broken(error)
            }
        }
        let answer: HTTPAnswer
        do {
            answer = try connection.finishBody()
        } catch {
            throw broken(error)
        }
        if (400...499).contains(answer.status) {
            // Refused at the request head: none of the body's records was published.
            throw .refused(refusal(answer))
        }
        guard answer.status == 200, let summary = try? JSONParser.parse(answer.text),
              let accepted = summary["accepted"]?.intValue, let rejected = summary["rejected"]?.intValue else {
            // A proxy's 5xx, say: whatever was received is found out after reconnecting.
            throw .broken("unexpected answer \(answer.status) to the records body", body)
        }
        if let lastSeq = summary["last_seq"]?.intValue { attachment.lastSeq = UInt64(lastSeq) }
        if settings.verbose {
            let range = summary["first_seq"]?.intValue.map { "seq \($0)-\(attachment.lastSeq)" } ?? "no seq"
            report("acknowledged \(accepted) of \(body.records.count) lines (\(range))")
        }
        if rejected > 0 {
            var reasons: [String] = []
            if case .array(let errors)? = summary["errors"] {
                reasons = errors.prefix(3).compactMap { $0["message"]?.stringValue }
            }
            let message = "\(rejected) line\(rejected == 1 ? "" : "s") rejected by the gateway: \(reasons.joined(separator: "; "))"
            report(message)
            // Not for a body of notices only: a notice that is itself rejected must not loop.
            if body.records.contains(where: { $0.loggerName.isEmpty }) {
                queue.appendNotice(.notice(.warning, String(message.prefix(400)), metadata: [("rejected", String(rejected))]))
            }
        }
    }

    /// Finds out which records of a body cut off with its connection reached the worker; sends the others again.
    private func resolve(_ lost: Unacknowledged, with attachment: inout Attachment) throws(PublishFailure) {
        guard attachment.epoch == lost.epoch else {
            queue.putBack([unconfirmed(lost.records.count, reason: "the gateway restarted or the worker was stopped before their receipt was confirmed")])
            return
        }
        let path = workerPath + "/logs?since=\(lost.afterSeq)"
        let connection = attachment.connection
        let answer = try call { () throws(ConnectionFailure) in try connection.request("GET", path) }
        guard answer.status == 200 else {
            queue.putBack([unconfirmed(lost.records.count, reason: "the gateway could not be asked about them (\(answer.status))")])
            return
        }
        var stored: [JSONValue] = []
        for line in answer.text.split(separator: "\n") {
            if let value = try? JSONParser.parse(String(line)) { stored.append(value) }
        }
        var next = 0       // records before `next` are known to have been received
        var matched = 0
        for record in stored {
            guard next < lost.records.count else { break }
            if let index = lost.records[next...].firstIndex(where: { $0.isStored(as: record) }) {
                next = index + 1
                matched += 1
            }
        }
        let evicted = stored.first?["seq"]?.intValue.map { UInt64($0) > lost.afterSeq + 1 } ?? false
        if next == 0 && evicted {
            queue.putBack([unconfirmed(lost.records.count, reason: "the worker's ring no longer holds the records they would follow")])
            return
        }
        var front: [OutgoingRecord] = []
        if next > matched {
            front.append(unconfirmed(next - matched, reason: "the gateway did not keep them (rejected or evicted)"))
        }
        let resend = Array(lost.records[next...])
        if settings.verbose {
            report("after reconnecting: \(matched) unacknowledged lines had been received, \(resend.count) are sent again")
        }
        queue.putBack(front + resend)
    }

    /// Counts and reports records whose receipt cannot be known; returns the notice to publish first.
    private func unconfirmed(_ count: Int, reason: String) -> OutgoingRecord {
        state.withLock { $0.unconfirmed += count }
        let message = "\(count) line\(count == 1 ? "" : "s") may be missing: \(count == 1 ? "it was" : "they were") being sent when the connection to the gateway broke, and \(reason)"
        report(message)
        return .notice(.warning, message, metadata: [("unconfirmed", String(count))])
    }

    private func refusal(_ answer: HTTPAnswer) -> String {
        let reason = (try? JSONParser.parse(answer.text))?["error"]?["message"]?.stringValue ?? answer.text.prefix(200).description
        return "the gateway \(settings.gateway) refused to publish into worker '\(settings.worker)' (\(answer.status)): \(reason)"
    }

    private func report(_ message: String) {
        printError("tailgate: \(message)")
    }
}

/// Bytes of NDJSON records for one chunk.
private struct ByteBufferBuilder {
    private var buffer = ByteBuffer()
    mutating func append(_ record: OutgoingRecord) { record.writeNDJSON(into: &buffer) }
    var bytes: [UInt8] { Array(buffer.readableBytesView) }
}
