import Logging
import NIOCore
import TailgateCore
import TailgateRedis

/// Follows runs other gateways write, for this gateway's mirrors (`RunStore.follow`): one blocking
/// `XREAD` at a time on the client's blocking connection, for every followed run at once, so Redis
/// traffic grows with the runs followed here, not with their subscribers. Each stream entry (one
/// batch) becomes a `Batch` built from its stored bytes once, handed to the run's followers on their
/// loops. Every `statusInterval` the followed runs' manifests are read (one pipeline): a run found
/// ended is given `.ended` once its last stored batch has been given.
///
/// A run added while a read is blocked is read from the next one, at most `blockTime` later.
final class RedisRunFollowers: Sendable {
    /// How long one `XREAD` blocks when nothing comes.
    static let blockTime = TimeAmount.milliseconds(200)
    /// How often the followed runs' manifests are read for their end.
    static let statusInterval = TimeAmount.milliseconds(500)
    /// Entries taken per run and read.
    static let entriesPerRead = 64

    private struct Follow {
        var id: RunID
        /// The last seq given.
        var position: UInt64
        var loop: EventLoop
        var onEvent: @Sendable (FollowedRunEvent) -> Void
        /// The manifest once it said the run ended (`.some(nil)`: no longer stored), and the round whose
        /// manifest read said so.
        var ending: RunInfo??
        var endingRound = 0
        /// Whether a manifest read found the run: only a run seen stored can be "no longer stored" (the
        /// manifest of a run begun a moment ago may not have reached Redis yet).
        var manifestSeen = false
    }

    private struct State {
        var follows: [ObjectIdentifier: Follow] = [:]
        var reading = false
        var closed = false
        /// Rounds begun (`read()`).
        var round = 0
        var lastStatusCheck = NIODeadline.uptimeNanoseconds(0)
    }

    private let client: RedisClient
    private let keys: RedisKeys
    private let loop: EventLoop
    private let logger: Logger
    private let state = Lock(State())

    init(client: RedisClient, keys: RedisKeys, loop: EventLoop, logger: Logger) {
        self.client = client
        self.keys = keys
        self.loop = loop
        self.logger = logger
    }

    /// Starts following `id` after seq `position`.
    func follow(_ id: RunID, after position: UInt64, on loop: EventLoop, _ onEvent: @escaping @Sendable (FollowedRunEvent) -> Void) -> RunFollowing {
        let following = RedisRunFollowing(followers: self)
        let start = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.follows[ObjectIdentifier(following)] = Follow(id: id, position: position, loop: loop, onEvent: onEvent, ending: nil)
            // The manifest of a new run is read at once: it may have ended already.
            state.lastStatusCheck = .uptimeNanoseconds(0)
            defer { state.reading = true }
            return !state.reading
        }
        if start { self.loop.execute { self.read() } }
        return following
    }

    fileprivate func cancel(_ following: RedisRunFollowing) {
        _ = state.withLock { $0.follows.removeValue(forKey: ObjectIdentifier(following)) }
    }

    /// Stops every following (the store closes).
    func close() {
        state.withLock { state in
            state.closed = true
            state.follows = [:]
        }
    }

    /// How many runs are followed now.
    var count: Int { state.withLock { $0.follows.count } }

    /// One round: the manifests when due, then one blocking read of every followed run from where its
    /// followers stand; then the next round (at once, or after a pause when Redis failed).
    private func read() {
        let (runs, checkStatus, round) = state.withLock { state -> ([RunID: UInt64], Bool, Int) in
            state.round += 1
            var runs: [RunID: UInt64] = [:]
            for follow in state.follows.values { runs[follow.id] = min(runs[follow.id] ?? .max, follow.position) }
            if runs.isEmpty { state.reading = false }
            let now = NIODeadline.now()
            let due = now - state.lastStatusCheck >= Self.statusInterval
            if due { state.lastStatusCheck = now }
            return (runs, due, state.round)
        }
        guard !runs.isEmpty else { return }
        let ordered = runs.sorted { $0.key.description < $1.key.description }
        let status: EventLoopFuture<Void> = checkStatus ? readManifests(ordered.map(\.key), round: round) : loop.makeSucceededVoidFuture()
        var arguments: [RedisCommand.Argument] = ["COUNT", .integer(Int64(Self.entriesPerRead)), "BLOCK",
                                                 .integer(Self.blockTime.nanoseconds / 1_000_000), "STREAMS"]
        arguments += ordered.map { .string(keys.stream($0.key)) }
        arguments += ordered.map { .string(RedisKeys.entryID(lastSeq: $0.value)) }
        let timeout = Self.blockTime + client.configuration.commandTimeout
        let entries = client.sendBlocking(RedisCommand("XREAD", arguments, timeout: timeout))
        status.and(entries).whenComplete { result in
            switch result {
            case .success(let (_, reply)):
                do {
                    try self.deliver(reply, round: round)
                } catch {
                    self.logger.error("a followed run's entries could not be read", metadata: ["error": "\(error)"])
                }
                self.loop.execute { self.read() }
            case .failure(let error):
                self.logger.debug("following runs: Redis does not answer", metadata: ["error": "\(error)"])
                self.loop.scheduleTask(in: .milliseconds(250)) { self.read() }
            }
        }
    }

    /// Reads the manifests of `runs` (one pipeline) and marks the followers of those that ended.
    private func readManifests(_ runs: [RunID], round: Int) -> EventLoopFuture<Void> {
        let replies = client.send(runs.map { RedisCommand("HGETALL", [.string(keys.manifest($0))]) })
        return EventLoopFuture.whenAllComplete(replies, on: loop).map { results in
            var endings: [RunID: RunInfo?] = [:]
            var stored: Set<RunID> = []
            for (id, result) in zip(runs, results) {
                guard case .success(let reply) = result else { continue }
                let info = RedisManifest.decode(reply, id: id)
                if info != nil { stored.insert(id) }
                if let info, info.status == .running { continue }
                endings[id] = info
            }
            self.state.withLock { state in
                for (key, follow) in state.follows where follow.ending == nil {
                    if stored.contains(follow.id) { state.follows[key]!.manifestSeen = true }
                    if let ending = endings[follow.id], ending != nil || follow.manifestSeen {
                        state.follows[key]!.ending = .some(ending)
                        state.follows[key]!.endingRound = round
                    }
                }
            }
        }
    }

    /// Gives each follower the entries after its position, then `.ended` to those whose run ended and
    /// has nothing more stored: their position reached the ending's last seq, or a read begun after the
    /// round that saw the ending found nothing more (that read ran in Redis after the end was written,
    /// so after the last batch; what is missing up to the last seq is no longer stored). A null reply
    /// means no followed run had anything new.
    private func deliver(_ reply: RESPValue, round: Int) throws {
        var read: [String: [RedisRunReader.Entry]] = [:]
        for (key, value) in try Self.streams(reply) {
            read[key] = try RedisRunReader.entries(value)
        }
        var events: [(EventLoop, @Sendable (FollowedRunEvent) -> Void, [FollowedRunEvent])] = []
        state.withLock { state in
            for (key, var follow) in state.follows {
                var given: [FollowedRunEvent] = []
                let entries = read[keys.stream(follow.id)] ?? []
                for entry in entries where entry.lastSeq > follow.position {
                    if let batch = Batch.fromLines(firstSeq: entry.firstSeq, lines: entry.lines) { given.append(.batch(batch)) }
                    follow.position = entry.lastSeq
                }
                // Ended, and this read found nothing more of it: the last stored batch was given (or what
                // is missing up to its last seq is no longer stored).
                if case .some(let ending) = follow.ending,
                   follow.position >= (ending?.lastSeq ?? .max) || (entries.isEmpty && round > follow.endingRound) {
                    given.append(.ended(ending))
                    state.follows[key] = nil
                } else {
                    state.follows[key] = follow
                }
                if !given.isEmpty { events.append((follow.loop, follow.onEvent, given)) }
            }
        }
        for (loop, onEvent, given) in events {
            loop.execute { for event in given { onEvent(event) } }
        }
    }

    /// The streams of an `XREAD` reply, each with its entries: `[[key, entries], …]` (RESP2), a map
    /// (RESP3), or null when the block time passed with nothing new.
    static func streams(_ reply: RESPValue) throws(RedisError) -> [(String, RESPValue)] {
        switch reply {
        case .null:
            return []
        case .map(let pairs):
            return try pairs.map { pair throws(RedisError) in
                guard let key = pair.key.string else { throw .unexpectedReply("XREAD gave a stream without a name") }
                return (key, pair.value)
            }
        case .array(let items):
            return try items.map { item throws(RedisError) in
                guard let pair = item.array, pair.count == 2, let key = pair[0].string else { throw .unexpectedReply("XREAD gave \(item)") }
                return (key, pair[1])
            }
        default:
            throw .unexpectedReply("XREAD gave \(reply)")
        }
    }
}

/// One run followed (`RedisRunStore.follow`): `cancel()` stops it.
final class RedisRunFollowing: RunFollowing {
    private weak let followers: RedisRunFollowers?

    init(followers: RedisRunFollowers) {
        self.followers = followers
    }

    func cancel() {
        followers?.cancel(self)
    }
}
