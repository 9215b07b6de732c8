import ArgumentParser
import TailgateCore
#if canImport(Glibc)
import Glibc
#endif

/// `tailgate run`: runs a program and publishes its output lines as a worker's records.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a program and publish its output lines (stdout and stderr) into a worker.",
        usage: "tailgate run --worker <id> [--gateway <url>] [--token <token>] [--pty] [options] -- <command> [<argument> ...]",
        discussion: """
            Each line the program writes becomes a record of the worker, published over one streamed \
            HTTP connection (POST /api/workers/<id>/records, NDJSON) as soon as it is read; the output is \
            also copied to tailgate's own stdout and stderr (--no-echo to keep quiet).

            Live output: a program whose output is a pipe often holds it back in 8 KiB blocks. tailgate \
            sets PYTHONUNBUFFERED=1 for it (unless set; --no-line-buffered leaves the environment alone), \
            so Python prints each line at once; Node.js, Go, Rust, Java and .NET do so anyway. For \
            anything else (C programs, Perl, Ruby, a program that colours its output only on a \
            terminal), --pty runs it with its stdout and stderr on pseudo-terminals: it then writes line \
            by line and keeps its ANSI colours, which the console renders.

            Records carry metadata {"stream":"stdout"} or {"stream":"stderr"}. A line that starts with a \
            level word takes that level: ERROR, WARNING or WARN, CRITICAL or FATAL, NOTICE, INFO, DEBUG, \
            TRACE — in capitals ("ERROR disk full"), or in any case before ':' ("error: disk full") or in \
            brackets ("[warn] retrying"); other lines are INFO (stderr too). ANSI colour codes are kept \
            in the message and skipped when looking for the level word.

            Production: the gateway may sit behind a proxy at a path, with TLS \
            (--gateway https://logs.example.com/tailgate; --cacert FILE or SSL_CERT_FILE to trust a \
            private CA), ask for a token of publish scope (--token, --token-file or TAILGATE_TOKEN; \
            made with `tailgate token --scope publish --worker <id>`), and the proxy for a password \
            (--header 'Authorization: Basic …'). TAILGATE_URL and TAILGATE_WORKER stand for --gateway and \
            --worker, so nothing secret need be on the command line.

            SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the program. When it ends, a last record \
            says "process exited with status N" (ERROR when N is not 0) or "process killed by signal S"; \
            the worker is stopped with the program's exit status (POST /api/workers/<id>/stop?exit_code=N, \
            128+S when killed by signal S), so its run ends "succeeded" (0) or "failed" and its subscribers \
            get "end"; tailgate exits with the same status.

            Every line is published exactly once, across broken connections and gateway restarts: \
            tailgate numbers the lines it sends (Tailgate-Publisher, Tailgate-Offset) and keeps each \
            one until the gateway's answer says it is on disk; after reconnecting (backoff up to 3 s) it \
            asks the gateway which line it has last and sends the rest. Up to --buffer-lines lines are \
            kept meanwhile; the lines beyond are counted and published as one WARNING record, "N lines \
            dropped while the gateway was unreachable", once it is back.

            A refusal is not retried: 401 (no token, or an invalid or expired one — also a proxy asking \
            for a password), 403 (the token lacks publish scope or the worker; the address may not \
            publish), 409 (the id belongs to an in-process worker), or a TLS certificate that is not \
            trusted. tailgate says why, once, and publishes nothing more.

            Exit status: the program's; 2 when the gateway refuses before the program starts (it is then \
            not started) or later while the program succeeds; 127 when the program is not found, 126 \
            when it cannot be executed.

            Example: TAILGATE_URL=https://logs.example.com/tailgate TAILGATE_TOKEN=$(cat token) \
            tailgate run --worker backtest-7 -- python3 backtest.py --days 30
            """)

    @OptionGroup var options: PublishOptions

    @Flag(inversion: .prefixedNo, help: "Copy the program's output to tailgate's stdout and stderr.")
    var echo = true

    @Flag(name: .customLong("line-buffered"), inversion: .prefixedNo, help: ArgumentHelp(
        "Ask the program to write its output as it goes: sets PYTHONUNBUFFERED=1 in its environment unless set."))
    var lineBuffered = true

    @Flag(name: .customLong("pty"), help: ArgumentHelp(
        "Run the program with its stdout and stderr on pseudo-terminals: any program then writes line by line and keeps its colours (it believes it writes to a terminal). Standard input stays tailgate's."))
    var pseudoTerminal = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The program and its arguments, after --.", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the program to run after --, e.g. tailgate run --worker job-1 -- ./job.sh") }
    }

    func run() throws {
        let publisher = try options.makePublisher(idPrefix: "run")
        if let refusal = publisher.preflight() {
            printError("tailgate: \(refusal)")
            throw ExitCode(2)
        }
        ChildProcess.installSignalForwarding()
        let child: ChildProcess
        do {
            child = try ChildProcess(arguments: command, output: pseudoTerminal ? .terminals : .pipes,
                                     environment: lineBuffered ? LineBuffering.environment() : [:])
        } catch {
            let message = "cannot run '\(command[0])': \(error)"
            printError("tailgate: \(message)")
            publisher.queue.appendNotice(.notice(.error, message, metadata: [("exit_status", String(error.shellStatus))]))
            publisher.start()
            publisher.finish(stop: WorkerStop(exitCode: error.shellStatus, reason: message))
            _ = options.drain(publisher)
            throw ExitCode(error.shellStatus)
        }
        child.forwardSignals()
        publisher.start()
        let readers = [
            OutputReader(fd: child.stdoutFD, stream: "stdout", echoTo: echo ? 1 : nil, queue: publisher.queue, maxLineBytes: options.maxLineBytes),
            OutputReader(fd: child.stderrFD, stream: "stderr", echoTo: echo ? 2 : nil, queue: publisher.queue, maxLineBytes: options.maxLineBytes),
        ]
        readers.forEach { $0.start() }
        let termination = child.wait()
        // The pipes end when the program exits, unless a process it started keeps them open.
        for reader in readers where !reader.waitForEnd(timeout: 2) {
            printError("tailgate: the program's \(reader.stream) is still open (held by a process it started); not waiting for it")
        }
        let exitRecord: OutgoingRecord
        let stop: WorkerStop
        switch termination {
        case .exited(let status):
            exitRecord = .notice(status == 0 ? .info : .error, "process exited with status \(status)", metadata: [("exit_status", String(status))])
            stop = WorkerStop(exitCode: status)  // the gateway's reason: "exited with status N"
        case .signalled(let signal):
            let name = ChildProcess.name(ofSignal: signal).map { " (\($0))" } ?? ""
            exitRecord = .notice(.error, "process killed by signal \(signal)\(name)", metadata: [("signal", String(signal))])
            stop = WorkerStop(exitCode: termination.shellStatus, reason: "killed by signal \(signal)\(name)")
        }
        publisher.queue.appendNotice(exitRecord)
        publisher.finish(stop: stop)
        let delivered = options.drain(publisher)
        var status = termination.shellStatus
        if case .refused = publisher.outcome, status == 0 { status = 2 }
        if !delivered && status == 0 && options.verbose { printError("tailgate: not every line was published") }
        throw ExitCode(status)
    }
}
