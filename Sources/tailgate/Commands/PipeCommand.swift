import ArgumentParser
import Dispatch
import Synchronization
import TailgateCore
#if canImport(Glibc)
import Glibc
#endif

/// `tailgate pipe`: publishes the lines of standard input as a worker's records.
struct PipeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipe",
        abstract: "Publish the lines of standard input into a worker.",
        usage: "some-program 2>&1 | tailgate pipe --worker <id> [--gateway <url>] [--token <token>] [--buffer-lines <n>] [options]",
        discussion: """
            Each line read becomes a record of the worker (metadata {"stream":"stdin"}), published over \
            one streamed HTTP connection as soon as it is read. Levels are read from the start of the \
            line as in `tailgate run` (ERROR, WARNING/WARN, CRITICAL/FATAL, NOTICE, INFO, DEBUG, TRACE; \
            otherwise INFO).

            At the end of input the worker is stopped, so its subscribers get "end" \
            (--no-stop-at-eof leaves it running, for a publisher that will come back). SIGINT and SIGTERM \
            end the input in the same way, and tailgate then exits with 128 + the signal.

            Reconnection, buffering (--buffer-lines), the "N lines dropped while the gateway was \
            unreachable" record and the exactly-once rule (numbered lines, kept until the gateway has \
            them on disk) are those of `tailgate run`. The worker is stopped without an exit status: its \
            run ends "stopped".

            Production, as for `tailgate run`: https:// gateways (--cacert FILE or SSL_CERT_FILE for a \
            private CA), a token of publish scope (--token, --token-file or TAILGATE_TOKEN), headers for \
            a proxy (--header 'Authorization: Basic …'); TAILGATE_URL and TAILGATE_WORKER stand for \
            --gateway and --worker. A refusal (401, 403, 409, an untrusted certificate) is said once and \
            not retried.

            Exit status: 0 when every line was published; 1 when some could not be delivered within \
            --drain-timeout; 2 when the gateway refuses to publish (401: no valid token; 403; 409; an \
            untrusted TLS certificate).

            Example: tail -F /var/log/strategy.log | tailgate pipe --worker strategy
            """)

    @OptionGroup var options: PublishOptions

    @Flag(name: .customLong("stop-at-eof"), inversion: .prefixedNo, help: "Stop the worker when input ends.")
    var stopAtEOF = true

    @Flag(help: "Also copy standard input to standard output, like tee.")
    var echo = false

    func run() throws {
        let publisher = try options.makePublisher(idPrefix: "pipe")
        if let refusal = publisher.preflight() {
            printError("tailgate: \(refusal)")
            throw ExitCode(2)
        }
        let wakeUp = DispatchSemaphore(value: 0)
        let received = ReceivedSignal()
        SignalWatcher.watch([SIGINT, SIGTERM]) { delivery in
            received.record(delivery.signal)
            wakeUp.signal()
        }
        publisher.start { wakeUp.signal() }
        let reader = OutputReader(fd: 0, stream: "stdin", echoTo: echo ? 1 : nil, queue: publisher.queue, maxLineBytes: options.maxLineBytes)
        reader.start { wakeUp.signal() }
        wakeUp.wait()  // input ended, a signal came, or the gateway refused
        if case .refused = publisher.outcome { throw ExitCode(2) }
        publisher.finish(stop: stopAtEOF ? .plain : nil)
        let delivered = options.drain(publisher)
        if case .refused = publisher.outcome { throw ExitCode(2) }
        if let signalNumber = received.value { throw ExitCode(128 + signalNumber) }
        if !delivered { throw ExitCode(1) }
    }
}

/// The first SIGINT or SIGTERM received.
private final class ReceivedSignal: Sendable {
    private let storage = Lock<Int32?>(nil)
    func record(_ number: Int32) { storage.withLock { if $0 == nil { $0 = number } } }
    var value: Int32? { storage.withLock { $0 } }
}
