import Foundation
import NIOCore
import NIOHTTP1
import TailgateCore

/// The work of a `GatewayPublisher`, on its event loop (the rules are described there): attach on every
/// new connection, stream bodies of the queue's entries as they come, remove what the answers confirm,
/// retry with backoff, and stop the worker at the end. Every method runs on the event loop; it waits
/// for nothing, it is woken: by the queue (an entry appended, input ended), by its connection (writable
/// again, an answer, the end), or by a timer.
final class PublishingLoop {
    private let publisher: GatewayPublisher
    private let box: NIOLoopBoundBox<PublishingLoop?>
    private let settings: GatewayPublisher.Settings
    private let queue: OutgoingQueue

    /// The connection bodies go on (attached), if one is open.
    private var connection: GatewayConnection?
    private var progress = Progress()
    private var backoff: Double
    /// Since when the gateway has been unreachable (reported once, and again when it is back).
    private var unreachableSince: NIODeadline?
    private var started = false
    private var ended = false
    /// What to do when woken, while waiting.
    private var whenWoken: (() -> Void)?
    private var wakeTimer: Scheduled<Void>?

    /// What the publisher knows of the gateway across connections.
    private struct Progress {
        /// The run the last answer was about; `nil` before the first.
        var epoch: String?
        /// Whether the gateway's answers lack `offset` (reported once).
        var offsetsMissing = false
    }

    /// Why an exchange did not go on.
    private enum PublishFailure: Error {
        /// A 4xx answer, or TLS that cannot be agreed on: publishing cannot go on.
        case refused(String)
        /// The gateway could not be reached, the connection broke, or an answer made no sense: the
        /// entries not confirmed are sent again on a new connection.
        case broken(String)

        init(_ failure: ConnectionFailure) {
            switch failure {
            case .broken(let text): self = .broken(text)
            case .tls(let text): self = .refused(text)
            }
        }
    }

    /// One body being sent, and its answer.
    private final class Body {
        let firstOffset: UInt64
        let started = NIODeadline.now()
        var lastInput = NIODeadline.now()
        var sent = 0
        var lastOffset: UInt64
        var carriesProgramLines = false
        /// Since when the channel has not been writable.
        var stalledSince: NIODeadline?
        /// The answer, or why none will come; the first one counts.
        var answer: Result<HTTPAnswer, ConnectionFailure>?
        /// Whether the answer came before the body was ended.
        var answeredEarly = false
        var ended = false
        var settled = false

        init(firstOffset: UInt64) {
            self.firstOffset = firstOffset
            lastOffset = firstOffset - 1
        }
    }

    init(publisher: GatewayPublisher, box: NIOLoopBoundBox<PublishingLoop?>) {
        self.publisher = publisher
        self.box = box
        settings = publisher.settings
        queue = publisher.queue
        backoff = settings.firstBackoff
    }

    private var gateway: GatewayAddress { settings.gateway }
    private var recordsPath: String { "/api/workers/\(settings.worker.rawValue)/records" }
    private var workerPath: String { "/api/workers/\(settings.worker.rawValue)" }
    private var publisherHeader: (String, String) { ("Tailgate-Publisher", settings.publisher.rawValue) }
    private var answerTimeout: TimeAmount { settings.client.configuration.answerTimeout }

    // MARK: Control

    /// Attaches before the program starts (short time-outs); hands `then` the refusal's message, or
    /// `nil` (attached, or unreachable: retried once publishing starts).
    func preflight(then: @escaping (String?) -> Void) {
        attach(connectTimeout: .seconds(3), answerTimeout: .seconds(10)) { result in
            switch result {
            case .success(let connection):
                self.connection = connection
                then(nil)
            case .failure(.refused(let message)):
                then(message)
            case .failure(.broken(let description)):
                self.unreachableSince = .now()
                self.publisher.report("gateway \(self.gateway) unreachable (\(description)); buffering up to \(self.queue.capacity) lines and retrying")
                then(nil)
            }
        }
    }

    /// Starts publishing what the queue holds and will hold.
    func start() {
        guard !started else { return }
        started = true
        step()
    }

    // MARK: The publishing loop

    /// Sends the next body, stops the worker once input has ended and all is confirmed, or waits.
    private func step() {
        guard !ended else { return }
        let status = queue.status
        if status.held == 0 {
            if status.closed {
                stopWorker()
            } else {
                sleep(wakeOnEntries: true, timeout: nil) { self.step() }
            }
            return
        }
        withConnection(retry: { self.step() }) { connection in self.sendBody(on: connection) }
    }

    /// Calls `use` with an attached connection: the open one, or a new one that attached.
    private func withConnection(retry: @escaping () -> Void, _ use: @escaping (GatewayConnection) -> Void) {
        if let connection, connection.isReusable, NIODeadline.now() - connection.idleSince < .seconds(30) {
            use(connection)
            return
        }
        connection?.close()
        connection = nil
        attach(connectTimeout: settings.client.configuration.connectTimeout, answerTimeout: answerTimeout) { result in
            switch result {
            case .success(let connection):
                self.connection = connection
                if let since = self.unreachableSince {
                    let seconds = Double((NIODeadline.now() - since).nanoseconds) / 1e9
                    self.publisher.report("gateway \(self.gateway) reachable again after \(Self.format(seconds)) s")
                    self.unreachableSince = nil
                }
                self.backoff = self.settings.firstBackoff
                use(connection)
            case .failure(let failure):
                self.failed(failure, retry: retry)
            }
        }
    }

    /// Opens a connection and names the publisher with an empty body; removes the entries the gateway
    /// has, and makes the others the next to send.
    private func attach(connectTimeout: TimeAmount, answerTimeout: TimeAmount,
                        then: @escaping (Result<GatewayConnection, PublishFailure>) -> Void) {
        let client = settings.client
        client.connect(on: box.eventLoop, timeout: connectTimeout).assumeIsolated().whenComplete { result in
            let connection: GatewayConnection
            do {
                connection = try GatewayConnection(channel: result.get(), client: client)
            } catch {
                if case .success(let channel) = result { channel.close(promise: nil) }
                then(.failure(PublishFailure(ConnectionFailure(error, address: self.gateway))))
                return
            }
            connection.onChange = { [weak self] in self?.wake() }
            connection.send(.POST, self.recordsPath, headers: [("Content-Type", "application/x-ndjson"), self.publisherHeader],
                            answerWithin: answerTimeout) { result in
                let answer: HTTPAnswer
                switch result {
                case .failure(let failure):
                    connection.close()
                    then(.failure(PublishFailure(failure)))
                    return
                case .success(let received):
                    answer = received
                }
                if (400...499).contains(answer.status) {
                    connection.close()
                    then(.failure(.refused(self.refusal(answer))))
                    return
                }
                guard answer.status == 200, let summary = try? JSONParser.parse(answer.text) else {
                    connection.close()
                    let phrase = HTTPResponseStatus(statusCode: answer.status).reasonPhrase
                    then(.failure(.broken("unexpected answer \(answer.status) \(phrase) to the publisher's first, empty body")))
                    return
                }
                let confirmed = self.apply(summary)?.removed ?? 0
                self.queue.rewind()
                if self.settings.verbose {
                    let held = self.queue.status.held
                    self.publisher.report("attached to worker '\(self.settings.worker)' as publisher \(self.settings.publisher) (epoch \(self.progress.epoch ?? "unknown")): "
                        + "\(confirmed) line\(confirmed == 1 ? "" : "s") confirmed, \(held) to send from offset \(self.queue.nextUnsentOffset)")
                }
                then(.success(connection))
            }
        }
    }

    // MARK: Bodies

    /// Sends one body of entries, as they come (`pump`), and settles it once answered.
    private func sendBody(on connection: GatewayConnection) {
        let body = Body(firstOffset: queue.nextUnsentOffset)
        connection.startBody(.POST, recordsPath, headers: [("Content-Type", "application/x-ndjson"), publisherHeader,
                                                          ("Tailgate-Offset", String(body.firstOffset))]) { result in
            guard body.answer == nil else { return }
            body.answer = result
            body.answeredEarly = !body.ended
            // Before the end of the body, the connection's onChange wakes the pump, which ends it.
            if body.ended { self.settle(body, on: connection) }
        }
        pump(body, on: connection)
    }

    /// Writes the entries that wait, then waits for more; ends the body after `idleSeconds` without
    /// input, after `maxBodySeconds`, after `maxBodyRecords`, at the end of input, or when an answer
    /// (or the end of the connection) came early. Waits while the gateway reads nothing, up to the
    /// answer time-out.
    private func pump(_ body: Body, on connection: GatewayConnection) {
        while body.answer == nil && body.sent < settings.maxBodyRecords {
            let now = NIODeadline.now()
            guard connection.isWritable else {
                let since = body.stalledSince ?? now
                body.stalledSince = since
                let left = answerTimeout - (now - since)
                if left <= .zero {
                    body.answer = .failure(.broken("the gateway \(gateway) took no data for \(answerTimeout.nanoseconds / 1_000_000_000) s"))
                    connection.close()
                    break
                }
                sleep(wakeOnEntries: false, timeout: left) { self.pump(body, on: connection) }
                return
            }
            body.stalledSince = nil
            let entries = queue.take(max: min(256, settings.maxBodyRecords - body.sent))
            if entries.isEmpty {
                let left = min(Self.amount(settings.idleSeconds) - (now - body.lastInput),
                               Self.amount(settings.maxBodySeconds) - (now - body.started))
                if queue.status.closed || left <= .zero { break }
                sleep(wakeOnEntries: true, timeout: left) { self.pump(body, on: connection) }
                return
            }
            var chunk = ByteBuffer()
            for entry in entries {
                entry.record.writeNDJSON(into: &chunk)
                body.carriesProgramLines = body.carriesProgramLines || entry.isProgramLine
            }
            body.sent += entries.count
            body.lastOffset = entries[entries.count - 1].offset
            body.lastInput = now
            connection.writeChunk(chunk)
        }
        body.ended = true
        connection.endBody()
        settle(body, on: connection)
    }

    /// Handles a body's answer once the body is ended and the answer (or a failure) is there:
    /// removes from the queue the entries it covers, then goes on.
    private func settle(_ body: Body, on connection: GatewayConnection) {
        guard body.ended, !body.settled, let result = body.answer else { return }
        body.settled = true
        do throws(PublishFailure) {
            try confirm(body, result)
            if body.answeredEarly { connection.close() }  // the request was cut short: not reusable
            step()
        } catch {
            failed(error, retry: { self.step() })
        }
    }

    private func confirm(_ body: Body, _ result: Result<HTTPAnswer, ConnectionFailure>) throws(PublishFailure) {
        let answer: HTTPAnswer
        switch result {
        case .failure(let failure): throw PublishFailure(failure)
        case .success(let received): answer = received
        }
        if (400...499).contains(answer.status) {
            // Refused at the request head: none of the body's lines was taken.
            throw .refused(refusal(answer))
        }
        guard answer.status == 200, let summary = try? JSONParser.parse(answer.text),
              let accepted = summary["accepted"]?.intValue, let rejected = summary["rejected"]?.intValue else {
            // A proxy's 5xx, say: the next connection's first answer tells what the gateway has.
            throw .broken("unexpected answer \(answer.status) to a body of \(body.sent) lines")
        }
        var covered = body.lastOffset
        if let applied = apply(summary) {
            covered = applied.covered
        } else {
            queue.confirm(through: body.lastOffset)  // no offsets: the answer itself says the body arrived
        }
        if settings.verbose {
            let seqs = summary["first_seq"]?.intValue.map { "seq \($0)-\(summary["last_seq"]?.intValue ?? $0)" } ?? "no seq"
            let duplicates = summary["duplicates"]?.intValue ?? 0
            publisher.report("acknowledged \(accepted) of \(body.sent) lines (\(seqs); offsets \(body.firstOffset)-\(body.lastOffset)"
                + (duplicates > 0 ? ", \(duplicates) already published" : "") + ")")
        }
        if rejected > 0 {
            var reasons: [String] = []
            if case .array(let errors)? = summary["errors"] {
                reasons = errors.prefix(3).compactMap { $0["message"]?.stringValue }
            }
            let message = "\(rejected) line\(rejected == 1 ? "" : "s") rejected by the gateway: \(reasons.joined(separator: "; "))"
            publisher.report(message)
            // Not for a body of notices only: a notice that is itself rejected must not loop.
            if body.carriesProgramLines {
                queue.appendNotice(.notice(.warning, String(message.prefix(400)), metadata: [("rejected", String(rejected))]))
            }
        }
        if body.sent > 0 && covered < body.lastOffset {
            // The body went (in part) into another run than the one attached to: the next connection
            // starts again from what the gateway has.
            throw .broken("the gateway has lines up to offset \(covered) of a body of offsets \(body.firstOffset)-\(body.lastOffset)")
        }
    }

    /// Applies an answer's `epoch` and `offset` K: notes a new run, and removes the entries up to K
    /// from the queue. Returns K and how many entries went; `nil` when the answer has no offset.
    private func apply(_ summary: JSONValue) -> (covered: UInt64, removed: Int)? {
        guard let epoch = summary["epoch"]?.stringValue, let offset = summary["offset"]?.intValue, offset >= 0 else {
            if !progress.offsetsMissing {
                progress.offsetsMissing = true
                publisher.report("gateway \(gateway) reports no publisher offsets (an older version): lines being sent when a connection breaks are sent again and may be published twice")
            }
            return nil
        }
        if let previous = progress.epoch, previous != epoch, settings.verbose {
            publisher.report("worker '\(settings.worker)' started a new run (epoch \(epoch), was \(previous)); offsets start again in it, the \(queue.status.held) lines held go into it")
        }
        progress.epoch = epoch
        let covered = UInt64(offset)
        return (covered, queue.confirm(through: covered))
    }

    // MARK: The end

    /// Input has ended and every entry is confirmed: stops the worker as asked, then ends.
    private func stopWorker() {
        guard let stop = publisher.requestedStop else {
            end(.delivered)
            return
        }
        // A new connection attaches first: after a gateway restart, that continues the run to stop.
        withConnection(retry: { self.stopWorker() }) { connection in
            connection.send(.POST, self.workerPath + "/stop" + stop.query) { result in
                let answer: HTTPAnswer
                switch result {
                case .failure(let failure):
                    self.failed(PublishFailure(failure), retry: { self.stopWorker() })
                    return
                case .success(let received):
                    answer = received
                }
                let text = answer.text.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines)
                if answer.status >= 500 {
                    self.failed(.broken("\(answer.status) from the gateway"), retry: { self.stopWorker() })
                } else if [401, 403, 409].contains(answer.status) {
                    self.end(.refused(self.refusal(answer)))
                } else {
                    if answer.status != 200 {
                        self.publisher.report("stopping worker '\(self.settings.worker)' failed (\(answer.status)): \(text)")
                    } else if self.settings.verbose {
                        self.publisher.report("worker '\(self.settings.worker)' stopped: \(text)")
                    }
                    self.end(.delivered)
                }
            }
        }
    }

    /// A refusal ends publishing; anything else is tried again after the backoff.
    private func failed(_ failure: PublishFailure, retry: @escaping () -> Void) {
        switch failure {
        case .refused(let message):
            end(.refused(message))
        case .broken(let description):
            connection?.close()
            connection = nil
            cancelSleep()
            if unreachableSince == nil {
                unreachableSince = .now()
                publisher.report("gateway \(gateway): \(description); retrying (buffering up to \(queue.capacity) lines)")
            } else if settings.verbose {
                publisher.report("gateway \(gateway): \(description); next attempt in \(Self.format(backoff)) s")
            }
            let delay = Self.amount(backoff)
            backoff = min(backoff * 2, settings.maxBackoff)
            box.eventLoop.assumeIsolated().scheduleTask(in: delay) { retry() }
        }
    }

    private func end(_ outcome: GatewayPublisher.Outcome) {
        guard !ended else { return }
        ended = true
        cancelSleep()
        connection?.close()
        connection = nil
        publisher.ended(outcome)
    }

    private func refusal(_ answer: HTTPAnswer) -> String {
        RefusalMessage.describe(answer, gateway: gateway, worker: settings.worker)
    }

    // MARK: Waiting

    /// Calls `next` when woken: by the queue (when `wakeOnEntries`), by the connection, or after `timeout`.
    private func sleep(wakeOnEntries: Bool, timeout: TimeAmount?, then next: @escaping () -> Void) {
        whenWoken = next
        wakeTimer?.cancel()
        wakeTimer = timeout.map { box.eventLoop.assumeIsolated().scheduleTask(in: $0) { [weak self] in self?.wake() } }
        if wakeOnEntries {
            let box = self.box
            queue.notifyWhenEntries { box.eventLoop.execute { box.value?.wake() } }
        }
    }

    /// Something happened that the loop may be waiting for.
    private func wake() {
        wakeTimer?.cancel()
        wakeTimer = nil
        guard let next = whenWoken else { return }
        whenWoken = nil
        next()
    }

    private func cancelSleep() {
        whenWoken = nil
        wakeTimer?.cancel()
        wakeTimer = nil
    }

    private static func amount(_ seconds: Double) -> TimeAmount {
        .nanoseconds(Int64(seconds * 1e9))
    }

    private static func format(_ seconds: Double) -> String {
        let tenths = Int((seconds * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}
