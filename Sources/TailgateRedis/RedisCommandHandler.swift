import NIOCore

/// A command on its way to Redis with the promise of its reply.
public struct RedisRequest: Sendable {
    public var command: RedisCommand
    public var promise: EventLoopPromise<RESPValue>

    public init(command: RedisCommand, promise: EventLoopPromise<RESPValue>) {
        self.command = command
        self.promise = promise
    }
}

/// Encodes outgoing commands and matches replies to them in order (Redis answers a connection's
/// commands in the order it got them, so any number can be in flight: pipelining).
///
/// Error replies fail their command with `RedisError.server`. When the oldest command has waited longer
/// than its timeout the handler fails it and closes the connection: a late reply could no longer be
/// matched to its command. One timer serves all commands in flight.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct InFlight {
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline
        var name: String
        var timeout: TimeAmount
    }

    private let defaultTimeout: TimeAmount
    private var inFlight = CircularBuffer<InFlight>(initialCapacity: 64)
    /// Commands encoded since the last flush: a pipeline goes out as one buffer, one write.
    private var outbound: ByteBuffer?
    private var outboundPromises: [EventLoopPromise<Void>] = []
    private var timer: Scheduled<Void>?
    private var closed = false

    init(commandTimeout: TimeAmount) {
        self.defaultTimeout = commandTimeout
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard !closed else {
            request.promise.fail(RedisError.connectionClosed)
            promise?.fail(RedisError.connectionClosed)
            return
        }
        let timeout = request.command.timeout ?? defaultTimeout
        if outbound == nil {
            outbound = context.channel.allocator.buffer(capacity: max(4096, RESPEncoder.encodedSize(request.command)))
        }
        RESPEncoder.write(request.command, into: &outbound!)
        if let promise { outboundPromises.append(promise) }
        inFlight.append(InFlight(promise: request.promise, deadline: .now() + timeout, name: request.command.rawName, timeout: timeout))
        if timer == nil { armTimer(context: context) }
    }

    func flush(context: ChannelHandlerContext) {
        if let buffer = outbound {
            outbound = nil
            var promise: EventLoopPromise<Void>?
            if !outboundPromises.isEmpty {
                let waiting = outboundPromises
                outboundPromises = []
                promise = context.eventLoop.makePromise()
                promise!.futureResult.whenComplete { result in for waiter in waiting { waiter.completeWith(result) } }
            }
            context.write(wrapOutboundOut(buffer), promise: promise)
        }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if case .push = value { return }  // out-of-band (RESP3): not a reply to a command
        guard let head = inFlight.popFirst() else {
            context.fireErrorCaught(RedisError.protocolViolation("a reply with no command waiting for it"))
            return
        }
        if case .error(let text) = value {
            head.promise.fail(RedisError.server(text))
        } else {
            head.promise.succeed(value)
        }
        if inFlight.isEmpty {
            timer?.cancel()
            timer = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A protocol error says what broke; an I/O error means the connection is gone.
        failAll(error as? RedisError ?? RedisError.connectionClosed)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        closed = true
        outbound = nil
        for promise in outboundPromises { promise.fail(error) }
        outboundPromises = []
        timer?.cancel()
        timer = nil
        while let entry = inFlight.popFirst() { entry.promise.fail(error) }
    }

    /// Wakes up at the oldest command's deadline.
    private func armTimer(context: ChannelHandlerContext) {
        guard let head = inFlight.first else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: head.deadline) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.checkDeadline(context: context)
        }
    }

    private func checkDeadline(context: ChannelHandlerContext) {
        guard let head = inFlight.first else { return }
        if head.deadline <= .now() {
            inFlight.removeFirst()
            head.promise.fail(RedisError.timeout(command: head.name.uppercased(), after: head.timeout))
            failAll(RedisError.connectionClosed)
            context.close(promise: nil)
        } else {
            armTimer(context: context)
        }
    }
}
