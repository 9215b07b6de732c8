import Dispatch
import NIOCore
import NIOPosix
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
///
/// **Refusals.** A 4xx answer (401 without a valid token — an expired one included —, 403, 409, a
/// proxy's 401 asking for a password) ends publishing at once, with one message: it is not retried,
/// as retrying cannot change it. So does a TLS failure that retrying cannot mend (an untrusted
/// certificate). Anything else (no connection, a broken one, a 5xx) is retried with backoff.
///
/// **Where it runs.** The work is done by a `PublishingLoop` on one NIO event loop, over NIO's HTTP/1.1
/// client codecs (`GatewayClient`, `GatewayConnection`); the readers of the program's output append to
/// the thread-safe `OutgoingQueue`, which wakes the loop. This facade is what the commands' threads use.
final class GatewayPublisher: Sendable {
    struct Settings: Sendable {
        var client: GatewayClient
        var worker: WorkerID
        /// This process's name in `Tailgate-Publisher`.
        var publisher: PublisherID
        var idleSeconds = 1.0
        var maxBodySeconds = 5.0
        var maxBodyRecords = 2000
        var firstBackoff = 0.1
        var maxBackoff = 3.0
        var verbose = false

        /// The gateway's address, for messages.
        var gateway: GatewayAddress { client.configuration.address }
    }

    /// How publishing ended.
    enum Outcome: Sendable, Equatable {
        case running
        /// Everything was delivered (and the worker stopped, when asked).
        case delivered
        /// The gateway refused (4xx, or TLS it cannot agree on): the message says why.
        case refused(String)
    }

    let settings: Settings
    let queue: OutgoingQueue
    private let eventLoop: EventLoop
    private let loop: NIOLoopBoundBox<PublishingLoop?>
    private let state = Lock<(outcome: Outcome, stop: WorkerStop?, onEnd: (@Sendable () -> Void)?)>((.running, nil, nil))
    private let done = DispatchSemaphore(value: 0)

    /// A publisher on `eventLoop` (by default one of NIO's shared loops).
    init(settings: Settings, queue: OutgoingQueue, eventLoop: EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.settings = settings
        self.queue = queue
        self.eventLoop = eventLoop
        loop = .makeEmptyBox(valueType: PublishingLoop.self, eventLoop: eventLoop)
    }

    // MARK: Control

    /// Checks, before the program starts, that the gateway lets this process publish into the worker
    /// (the first connection attaches, and stays open for the lines to come). Returns the refusal's
    /// message on a 4xx; a gateway that cannot be reached is no refusal (it is retried later).
    func preflight() -> String? {
        let answer = eventLoop.makePromise(of: String?.self)
        eventLoop.execute { [self] in
            publishingLoop().preflight { answer.succeed($0) }
        }
        return (try? answer.futureResult.wait()) ?? nil
    }

    /// Starts publishing; `onEnd` is called (on another thread) when publishing has ended, delivered or refused.
    func start(onEnd: @escaping @Sendable () -> Void = {}) {
        state.withLock { $0.onEnd = onEnd }
        eventLoop.execute { [self] in publishingLoop().start() }
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

    // MARK: For the publishing loop

    /// The stop `finish(stop:)` asked for.
    var requestedStop: WorkerStop? { state.withLock { $0.stop } }

    /// Publishing has ended: reports a refusal, and wakes whoever waits.
    func ended(_ outcome: Outcome) {
        if case .refused(let message) = outcome { report(message) }
        let onEnd = state.withLock { state in
            state.outcome = outcome
            return state.onEnd
        }
        done.signal()
        onEnd?()
    }

    /// Writes `tailgate: message` to standard error.
    func report(_ message: String) {
        printError("tailgate: \(message)")
    }

    /// The loop-bound worker, made on first use (on the event loop).
    private func publishingLoop() -> PublishingLoop {
        if let existing = loop.value { return existing }
        let made = PublishingLoop(publisher: self, box: loop)
        loop.value = made
        return made
    }
}
