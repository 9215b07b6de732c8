import Logging
import NIOCore
import Synchronization

/// One connection to Redis that is kept up: connects (with `AUTH`/`SELECT`), and after a failure or a
/// lost connection tries again after a capped exponential backoff, for as long as it is not closed.
/// While it has no connection, commands fail at once with `RedisError.notConnected` and the reason.
final class RedisLink: Sendable {
    private enum Phase {
        case idle
        case connecting
        case connected(RedisConnection)
        case waiting(Scheduled<Void>)
        case closed
    }

    private struct State {
        var phase: Phase = .idle
        var failedAttempts = 0
        var lastError: String?
        var waiters: [EventLoopPromise<Void>] = []
    }

    let configuration: RedisConfiguration
    let eventLoop: EventLoop
    private let logger: Logger
    private let role: String
    private let state = Mutex(State())

    init(configuration: RedisConfiguration, eventLoop: EventLoop, logger: Logger, role: String) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.role = role
    }

    /// Starts connecting, once; later calls do nothing.
    func start() {
        let starts = state.withLock { state -> Bool in
            guard case .idle = state.phase else { return false }
            state.phase = .connecting
            return true
        }
        if starts { connect() }
    }

    /// The connection, when there is one.
    var connection: RedisConnection? {
        state.withLock { state in
            if case .connected(let connection) = state.phase { return connection }
            return nil
        }
    }

    /// Why the link has no connection (the last connect or connection error); `nil` while connected.
    var lastError: String? {
        state.withLock { state in
            switch state.phase {
            case .connected: return nil
            case .closed: return RedisError.clientClosed.description
            case .idle, .connecting: return state.lastError ?? "connecting to \(configuration.displayAddress)"
            case .waiting: return state.lastError
            }
        }
    }

    /// Starts the link if it has not started, and sends `command`: while the first connection is being
    /// made, after it is made (up to the connect timeout); otherwise like `send`.
    func sendStartingIfNeeded(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        start()
        let firstConnect = state.withLock { state -> Bool in
            if case .connecting = state.phase, state.lastError == nil { return true }
            return false
        }
        guard firstConnect else { return send(command) }
        return waitUntilConnected(within: configuration.connectTimeout + .seconds(1)).flatMap { [self] in send(command) }
    }

    /// Fails at once unless connected.
    func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        guard let connection else { return eventLoop.makeFailedFuture(notConnectedError()) }
        return connection.send(command)
    }

    /// A pipeline; every command fails at once unless connected.
    func send(_ commands: [RedisCommand]) -> [EventLoopFuture<RESPValue>] {
        guard let connection else {
            let error = notConnectedError()
            return commands.map { _ in eventLoop.makeFailedFuture(error) }
        }
        return connection.send(commands)
    }

    func notConnectedError() -> RedisError {
        state.withLock { state in
            if case .closed = state.phase { return .clientClosed }
            return .notConnected(state.lastError ?? "connecting to \(configuration.displayAddress)")
        }
    }

    /// Succeeds when connected; fails with the last error after `timeout`.
    func waitUntilConnected(within timeout: TimeAmount) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let connected = state.withLock { state -> Bool in
            if case .connected = state.phase { return true }
            if case .closed = state.phase { promise.fail(RedisError.clientClosed); return false }
            state.waiters.append(promise)
            return false
        }
        if connected { promise.succeed() }
        let timer = eventLoop.scheduleTask(in: timeout) { [self] in
            promise.fail(notConnectedError())
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }

    private func connect() {
        RedisConnection.connect(to: configuration, on: eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let connection): connected(connection)
            case .failure(let error): failed(error)
            }
        }
    }

    private func connected(_ connection: RedisConnection) {
        let (waiters, keep, recovered) = state.withLock { state -> ([EventLoopPromise<Void>], Bool, Bool) in
            guard case .connecting = state.phase else { return ([], false, false) }
            state.phase = .connected(connection)
            let recovered = state.failedAttempts > 0 || state.lastError != nil
            state.failedAttempts = 0
            state.lastError = nil
            defer { state.waiters = [] }
            return (state.waiters, true, recovered)
        }
        guard keep else {
            _ = connection.close()
            return
        }
        if recovered { logger.info("connected to Redis again", metadata: ["redis": "\(configuration.displayAddress)", "role": "\(role)"]) }
        connection.closeFuture.whenComplete { [self] _ in lost(connection) }
        for waiter in waiters { waiter.succeed() }
    }

    private func lost(_ connection: RedisConnection) {
        let isCurrent = state.withLock { state -> Bool in
            guard case .connected(let current) = state.phase, current === connection else { return false }
            state.lastError = "the connection to \(configuration.displayAddress) was lost"
            state.phase = .connecting
            return true
        }
        guard isCurrent else { return }
        logger.warning("lost the connection to Redis", metadata: ["redis": "\(configuration.displayAddress)", "role": "\(role)"])
        connect()
    }

    private func failed(_ error: Error) {
        let (delay, firstFailure) = state.withLock { state -> (TimeAmount?, Bool) in
            guard case .connecting = state.phase else { return (nil, false) }
            let text = (error as? RedisError)?.description ?? "cannot connect to \(configuration.displayAddress): \(error)"
            let first = state.failedAttempts == 0
            state.lastError = text
            let delay = configuration.backoff.delay(attempt: state.failedAttempts)
            state.failedAttempts += 1
            state.phase = .waiting(eventLoop.scheduleTask(in: delay) { [self] in retry() })
            return (delay, first)
        }
        if firstFailure, let delay {
            logger.warning("cannot connect to Redis; retrying with backoff", metadata: [
                "redis": "\(configuration.displayAddress)", "role": "\(role)", "error": "\(error)", "retry_in_ms": "\(delay.nanoseconds / 1_000_000)",
            ])
        }
    }

    private func retry() {
        let goes = state.withLock { state -> Bool in
            guard case .waiting = state.phase else { return false }
            state.phase = .connecting
            return true
        }
        if goes { connect() }
    }

    /// Closes the connection and stops reconnecting; commands in flight fail.
    func close() -> EventLoopFuture<Void> {
        let (connection, waiters) = state.withLock { state -> (RedisConnection?, [EventLoopPromise<Void>]) in
            var connection: RedisConnection?
            switch state.phase {
            case .connected(let current): connection = current
            case .waiting(let timer): timer.cancel()
            default: break
            }
            state.phase = .closed
            defer { state.waiters = [] }
            return (connection, state.waiters)
        }
        for waiter in waiters { waiter.fail(RedisError.clientClosed) }
        return connection?.close() ?? eventLoop.makeSucceededVoidFuture()
    }
}
