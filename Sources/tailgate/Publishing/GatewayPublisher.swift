import Foundation
import NIOCore
import Synchronization
import TailgateCore

/// Publishes the queue's records into one worker over streamed NDJSON bodies, reconnecting when the
/// gateway goes away, so that every line is published exactly once — across broken connections and
/// gateway restarts, `kill -9` included (docs/PROTOCOL.md, "Publishing exactly once").
///
/// **Numbering.** The process names itself with a random publisher id (`Settings.publisher`), and the
/// queue numbers its entries 1, 2, 3, … as they are appended (a drop marker and tailgate's own notices
/// are entries too). Every body of `POST /api/workers/{id}/records` carries `Tailgate-Publisher: <id>`
/// and `Tailgate-Offset: N`, the offset of its first entry; its lines — exactly one NDJSON line per
/// entry, never a blank one — have the offsets N, N+1, …. The gateway keeps, per run and publisher, the
/// highest offset it has taken (published or rejected) and skips any line at or below it.
///
/// **Bodies and answers.** Entries are sent as soon as they are read. A body is ended after
/// `idleSeconds` without input, after `maxBodySeconds`, after `maxBodyRecords`, or when input ends. The
/// gateway answers once the body's records are written to disk, with the run's `epoch` and the
/// publisher's `offset` K; the entries up to K are then removed from the queue. Until an answer covers
/// them, sent entries stay in the queue (beside the `capacity` lines waiting to be sent), so that they
/// survive a broken connection or a gateway killed with `kill -9`. An answer that does not cover its
/// body (it went partly into another run) counts as a broken connection.
///
/// **Attaching.** Every new connection starts with an empty body that names the publisher: it creates
/// the worker (or continues its run after a gateway restart), and is refused with a 4xx before any line
/// is at stake. Its answer's K is the last line the gateway has: entries up to K are removed, and the
/// next body starts at K+1 with every entry still held, whatever was sent on a broken connection.
///
/// **A new run.** When an answer's `epoch` differs from the one seen before, the worker started a new
/// run (it was stopped, or stopped as idle, while the publisher was away). Offsets start again in it
/// (K is 0), so every entry held is sent into the new run.
///
/// **A gateway that reports no offset** (older than this protocol): a body's answer confirms the body,
/// and after a broken connection every entry held is sent again — lines may then be published twice,
/// which is reported once.
///
/// **Stopping.** Once input has ended and every entry is confirmed, the worker is stopped as
/// `finish(stop:)` asked: `POST /api/workers/{id}/stop`, with `?exit_code=N` (and `reason=`) when the
/// program had an exit status. On a new connection the publisher attaches first, so that a run left
/// open by a gateway restart is continued, then stopped.
final class GatewayPublisher: Sendable {
    struct Settings: Sendable {
        var gateway: GatewayAddress
        var worker: WorkerID
        /// This process's name in `Tailgate-Publisher`.
        var publisher: PublisherID
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
    private let state = Lock<(outcome: Outcome, stop: WorkerStop?)>((.running, nil))
    private let done = DispatchSemaphore(value: 0)

    init(settings: Settings, queue: OutgoingQueue) {
        self.settings = settings
        self.queue = queue
    }

    private var recordsPath: String { "/api/workers/\(settings.worker.rawValue)/records" }
    private var workerPath: String { "/api/workers/\(settings.worker.rawValue)" }
    private var publisherHeader: (name: String, value: String) { ("Tailgate-Publisher", settings.publisher.rawValue) }

    // MARK: Control

    /// Checks, before the program starts, that the gateway lets this process publish into the worker.
    /// Returns the refusal's message on a 4xx; a gateway that cannot be reached is no refusal (it is
    /// retried later).
    func preflight() -> String? {
        do {
            let connection = try GatewayConnection(to: settings.gateway, timeout: 3, ioTimeout: 10)
            let answer = try connection.request("POST", recordsPath, contentType: "application/x-ndjson", headers: [publisherHeader])
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

    /// Input has ended: deliver what is left, then stop the worker as `stop` says (`nil`: leave it running).
    func finish(stop: WorkerStop?) {
        state.withLock { $0.stop = stop }
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

    /// What the publisher knows of the gateway across connections.
    private struct Progress {
        /// The run the last answer was about; `nil` before the first.
        var epoch: String?
        /// Whether the gateway's answers lack `offset` (reported once).
        var offsetsMissing = false
    }

    private func publish() -> Outcome {
        var connection: GatewayConnection?
        var progress = Progress()
        var backoff = settings.firstBackoff
        var unreachableSince: Double?
        while true {
            let status = queue.status
            if status.held == 0 {
                if status.closed { break }
                queue.waitForEntries(timeout: nil)
                continue
            }
            do throws(PublishFailure) {
                if connection == nil || connection!.isStale || MonotonicClock.now - connection!.idleSince > 30 {
                    connection = nil
                    connection = try attach(&progress)
                    if let since = unreachableSince {
                        report("gateway \(settings.gateway) reachable again after \(String(format: "%.1f", MonotonicClock.now - since)) s")
                        unreachableSince = nil
                    }
                    backoff = settings.firstBackoff
                }
                try sendBody(on: connection!, &progress)
            } catch {
                switch error {
                case .refused(let message):
                    return .refused(message)
                case .broken(let description):
                    connection = nil
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
        if let stop = state.withLock({ $0.stop }) {
            while true {
                do throws(PublishFailure) {
                    // A new connection attaches first: after a gateway restart, that continues the run to stop.
                    if connection == nil || connection!.isStale || MonotonicClock.now - connection!.idleSince > 30 {
                        connection = nil
                        connection = try attach(&progress)
                    }
                    let open = connection!
                    let answer = try call { () throws(ConnectionFailure) in try open.request("POST", workerPath + "/stop" + stop.query) }
                    if answer.status >= 500 { throw PublishFailure.broken("\(answer.status) from the gateway") }
                    if answer.status == 403 || answer.status == 409 { return .refused(refusal(answer)) }
                    if answer.status != 200 {
                        report("stopping worker '\(settings.worker)' failed (\(answer.status)): \(answer.text.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines))")
                    } else if settings.verbose {
                        report("worker '\(settings.worker)' stopped: \(answer.text.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines))")
                    }
                    break
                } catch {
                    if case .refused(let message) = error { return .refused(message) }
                    connection = nil
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
        /// The gateway could not be reached, the connection broke, or an answer made no sense: the
        /// entries not confirmed are sent again on a new connection.
        case broken(String)
    }

    private func call<T>(_ body: () throws(ConnectionFailure) -> T) throws(PublishFailure) -> T {
        do {
            return try body()
        } catch {
            throw .broken(error.description)
        }
    }

    /// Opens a connection and names the publisher with an empty body; removes the entries the gateway
    /// has, and makes the others the next to send.
    private func attach(_ progress: inout Progress) throws(PublishFailure) -> GatewayConnection {
        let connection = try call { () throws(ConnectionFailure) in try GatewayConnection(to: settings.gateway) }
        let answer = try call { () throws(ConnectionFailure) in
            try connection.request("POST", recordsPath, contentType: "application/x-ndjson", headers: [publisherHeader])
        }
        if (400...499).contains(answer.status) { throw .refused(refusal(answer)) }
        guard answer.status == 200, let summary = try? JSONParser.parse(answer.text) else {
            throw .broken("unexpected answer \(answer.status) to the publisher's first, empty body")
        }
        let confirmed = apply(summary, &progress)?.removed ?? 0
        queue.rewind()
        if settings.verbose {
            let held = queue.status.held
            report("attached to worker '\(settings.worker)' as publisher \(settings.publisher) (epoch \(progress.epoch ?? "unknown")): "
                + "\(confirmed) line\(confirmed == 1 ? "" : "s") confirmed, \(held) to send from offset \(queue.nextUnsentOffset)")
        }
        return connection
    }

    /// Sends one body of entries, as they come, and removes them from the queue once the answer covers them.
    private func sendBody(on connection: GatewayConnection, _ progress: inout Progress) throws(PublishFailure) {
        let firstOffset = queue.nextUnsentOffset
        try call { () throws(ConnectionFailure) in
            try connection.startStreamingRequest("POST", recordsPath, contentType: "application/x-ndjson",
                                                 headers: [publisherHeader, ("Tailgate-Offset", String(firstOffset))])
        }
        let started = MonotonicClock.now
        var lastInput = started
        var sent = 0
        var lastOffset = firstOffset - 1
        var carriesProgramLines = false
        while sent < settings.maxBodyRecords {
            let entries = queue.take(max: min(256, settings.maxBodyRecords - sent))
            if entries.isEmpty {
                let now = MonotonicClock.now
                let remaining = min(settings.idleSeconds - (now - lastInput), settings.maxBodySeconds - (now - started))
                if queue.status.closed || remaining <= 0 || connection.hasAnswerWaiting { break }
                queue.waitForEntries(timeout: remaining)
                continue
            }
            var chunk = ByteBuffer()
            for entry in entries {
                entry.record.writeNDJSON(into: &chunk)
                carriesProgramLines = carriesProgramLines || entry.isProgramLine
            }
            sent += entries.count
            lastOffset = entries[entries.count - 1].offset
            lastInput = MonotonicClock.now
            try call { () throws(ConnectionFailure) in try connection.sendChunk(Array(chunk.readableBytesView)) }
        }
        let answer = try call { () throws(ConnectionFailure) in try connection.finishBody() }
        if (400...499).contains(answer.status) {
            // Refused at the request head: none of the body's lines was taken.
            throw .refused(refusal(answer))
        }
        guard answer.status == 200, let summary = try? JSONParser.parse(answer.text),
              let accepted = summary["accepted"]?.intValue, let rejected = summary["rejected"]?.intValue else {
            // A proxy's 5xx, say: the next connection's first answer tells what the gateway has.
            throw .broken("unexpected answer \(answer.status) to a body of \(sent) lines")
        }
        var covered = lastOffset
        if let applied = apply(summary, &progress) {
            covered = applied.covered
        } else {
            queue.confirm(through: lastOffset)  // no offsets: the answer itself says the body arrived
        }
        if settings.verbose {
            let seqs = summary["first_seq"]?.intValue.map { "seq \($0)-\(summary["last_seq"]?.intValue ?? $0)" } ?? "no seq"
            let duplicates = summary["duplicates"]?.intValue ?? 0
            report("acknowledged \(accepted) of \(sent) lines (\(seqs); offsets \(firstOffset)-\(lastOffset)"
                + (duplicates > 0 ? ", \(duplicates) already published" : "") + ")")
        }
        if rejected > 0 {
            var reasons: [String] = []
            if case .array(let errors)? = summary["errors"] {
                reasons = errors.prefix(3).compactMap { $0["message"]?.stringValue }
            }
            let message = "\(rejected) line\(rejected == 1 ? "" : "s") rejected by the gateway: \(reasons.joined(separator: "; "))"
            report(message)
            // Not for a body of notices only: a notice that is itself rejected must not loop.
            if carriesProgramLines {
                queue.appendNotice(.notice(.warning, String(message.prefix(400)), metadata: [("rejected", String(rejected))]))
            }
        }
        if sent > 0 && covered < lastOffset {
            // The body went (in part) into another run than the one attached to: the next connection
            // starts again from what the gateway has.
            throw .broken("the gateway has lines up to offset \(covered) of a body of offsets \(firstOffset)-\(lastOffset)")
        }
    }

    /// Applies an answer's `epoch` and `offset` K: notes a new run, and removes the entries up to K
    /// from the queue. Returns K and how many entries went; `nil` when the answer has no offset.
    private func apply(_ summary: JSONValue, _ progress: inout Progress) -> (covered: UInt64, removed: Int)? {
        guard let epoch = summary["epoch"]?.stringValue, let offset = summary["offset"]?.intValue, offset >= 0 else {
            if !progress.offsetsMissing {
                progress.offsetsMissing = true
                report("gateway \(settings.gateway) reports no publisher offsets (an older version): lines being sent when a connection breaks are sent again and may be published twice")
            }
            return nil
        }
        if let previous = progress.epoch, previous != epoch, settings.verbose {
            report("worker '\(settings.worker)' started a new run (epoch \(epoch), was \(previous)); offsets start again in it, the \(queue.status.held) lines held go into it")
        }
        progress.epoch = epoch
        let covered = UInt64(offset)
        return (covered, queue.confirm(through: covered))
    }

    private func refusal(_ answer: HTTPAnswer) -> String {
        let reason = (try? JSONParser.parse(answer.text))?["error"]?["message"]?.stringValue ?? answer.text.prefix(200).description
        return "the gateway \(settings.gateway) refused to publish into worker '\(settings.worker)' (\(answer.status)): \(reason)"
    }

    private func report(_ message: String) {
        printError("tailgate: \(message)")
    }
}
