import Logging
import NIOCore
import TailgateCore
import TailgateRedis

/// One worker's writer lease as this store holds it (`RedisRunStore.acquireWriter`).
struct RedisLease: Sendable {
    /// Workers of this gateway using the lease (the bus claims once per worker it makes).
    var claims: Int
    /// Claims of workers that were using it when it was lost: their releases come later and must not
    /// count against a lease taken again meanwhile.
    var staleClaims = 0
    /// Whether Redis has said the lease is ours (false: granted while Redis could not be asked; the
    /// renewal then tries to take it).
    var confirmed: Bool
    /// Whether another writer took it, or it expired: the worker's open runs are fenced.
    var lost = false
    /// Changes each time the lease is taken anew: a renewal's answer about an older one is ignored.
    var generation: UInt64
    /// Told when the lease is lost.
    var onLost: @Sendable (String) -> Void
}

/// The leases this store holds, behind their own lock (never taken inside the state's lock).
struct RedisLeaseTable: Sendable {
    var leases: [WorkerID: RedisLease] = [:]
    var nextGeneration: UInt64 = 1
    var closed = false
}

/// Writer leases: one key per worker, `P:{W}:lease`, holding the writing gateway's instance name, set
/// with `PX leaseTTL` and renewed every `leaseTTL / 3` by a script that checks it is still ours. A gateway
/// that finds its lease taken or expired stops writing the worker's open runs (they are fenced here) and
/// tells the bus, which stops the local worker. Every command about leases is sent under the lease
/// table's lock, so that a release, a new claim and a renewal of one worker reach Redis in the order
/// the table saw them.
extension RedisRunStore {
    /// Claims the right to write `worker`'s runs for the fleet: granted at once while this gateway holds
    /// it, else one round trip (`SET … NX PX` in a script, bounded by `leaseTimeout`). When Redis
    /// cannot be asked the claim is granted provisionally (the gateway keeps publishing, as it keeps
    /// serving, while Redis is away) and the renewal takes the lease when Redis is back — or, when
    /// another gateway took it meanwhile, reports it lost.
    public func acquireWriter(for worker: WorkerID, onLost: @escaping @Sendable (String) -> Void) -> WriterClaim {
        let key = keys.lease(of: worker)
        let value = instanceName
        let ttl = configuration.leaseTTL
        let sent = leaseTable.withLock { table -> EventLoopFuture<RESPValue>? in
            if table.closed { return nil }
            if var lease = table.leases[worker], !lease.lost {
                lease.claims += 1
                lease.onLost = onLost
                table.leases[worker] = lease
                return nil
            }
            var command = RedisScripts.command(RedisScripts.acquireLease, keys: [key], arguments: [.string(value), .integer(ttl.nanoseconds / 1_000_000)])
            command.timeout = configuration.leaseTimeout
            return client.send(command)
        }
        guard let sent else { return .granted }
        let answer: LeaseAnswer
        do {
            answer = try LeaseAnswer(try sent.blockingResult(within: configuration.leaseTimeout + .milliseconds(100)))
        } catch {
            logger.warning("cannot ask Redis for a writer lease: granted until Redis can be asked",
                           metadata: ["worker": "\(worker)", "error": "\(error)"])
            answer = .unknown
        }
        let claim = leaseTable.withLock { table -> WriterClaim in
            if var lease = table.leases[worker], !lease.lost {
                // Another caller took it meanwhile (this answer found our own value, or none).
                if case .heldBy(let holder, let remaining) = answer {
                    return .heldElsewhere(holder: holder, retryAfter: .milliseconds(max(remaining, 1)))
                }
                lease.claims += 1
                lease.onLost = onLost
                lease.confirmed = lease.confirmed || answer == .granted
                table.leases[worker] = lease
                return .granted
            }
            switch answer {
            case .heldBy(let holder, let remaining):
                return .heldElsewhere(holder: holder, retryAfter: .milliseconds(max(remaining, 1)))
            case .granted, .unknown:
                let stale = table.leases[worker]?.staleClaims ?? 0
                table.leases[worker] = RedisLease(claims: 1, staleClaims: stale, confirmed: answer == .granted,
                                                  generation: table.nextGeneration, onLost: onLost)
                table.nextGeneration += 1
                return .granted
            }
        }
        if claim == .granted && answer == .granted {
            // Another gateway may have begun or written the worker's newest run since the list of runs
            // was last read: read it again before the bus looks for a run to resume.
            _ = try? refreshNewestRun(of: worker).blockingResult(within: configuration.leaseTimeout)
        }
        return claim
    }

    /// Reads `worker`'s newest run from Redis into the list of runs (unless this store writes it).
    func refreshNewestRun(of worker: WorkerID) -> EventLoopFuture<Void> {
        client.send(RedisCommand("ZRANGE", [.string(keys.runs(of: worker)), "-1", "-1"])).flatMap { reply in
            guard let epoch = reply.array?.first?.string, RunID.isValidEpoch(epoch) else { return self.loop.makeSucceededVoidFuture() }
            let id = RunID(worker: worker, epoch: epoch)
            return self.client.send(RedisCommand("HGETALL", [.string(self.keys.manifest(id))])).map { manifest in
                guard let info = RedisManifest.decode(manifest, id: id) else { return }
                self.state.withLock { state in
                    if let entry = state.runs[id], entry.isOpen || entry.queuedOperations > 0 || !entry.pending.isEmpty { return }
                    if state.runs[id] != nil { state.runs[id]!.info = info } else { state.runs[id] = RedisRunEntry(info: info, isOpen: false) }
                }
            }
        }
    }

    /// Gives up one claim of `worker`'s lease; the last one deletes the key, if it still holds this
    /// gateway's name (a compare-and-delete script).
    public func releaseWriter(for worker: WorkerID) {
        let key = keys.lease(of: worker)
        let value = instanceName
        leaseTable.withLock { table in
            guard var lease = table.leases[worker] else { return }
            if lease.staleClaims > 0 { lease.staleClaims -= 1 } else { lease.claims = max(0, lease.claims - 1) }
            guard lease.claims == 0 && lease.staleClaims == 0 else {
                table.leases[worker] = lease
                return
            }
            table.leases[worker] = nil
            if !lease.lost && !table.closed {
                _ = client.send(RedisScripts.command(RedisScripts.releaseLease, keys: [key], arguments: [.string(value)]))
            }
        }
        // A run of the worker still open here was handed back (`Worker.handBack`): another gateway may
        // continue it, so the list of runs follows Redis for it again.
        state.withLock { state in
            for (id, entry) in state.runs where id.worker == worker && entry.isOpen && entry.pending.isEmpty && entry.queuedOperations == 0 {
                state.runs[id]!.isOpen = false
            }
        }
    }

    /// The gateway holding `worker`'s lease now (its instance name), `nil` when none does (from Redis).
    public func writer(of worker: WorkerID) -> EventLoopFuture<String?> {
        client.send(RedisCommand("GET", [.string(keys.lease(of: worker))])).map { $0.string }
    }

    /// Renews every lease held (and takes those granted while Redis could not be asked), in one
    /// pipeline; reports those found taken or expired. Runs every `leaseTTL / 3` on the store's loop.
    func renewLeases() {
        let value = instanceName
        let ttl = Int64(configuration.leaseTTL.nanoseconds / 1_000_000)
        let sent = leaseTable.withLock { table -> [(WorkerID, UInt64, Bool, EventLoopFuture<RESPValue>)] in
            guard !table.closed else { return [] }
            let held = table.leases.filter { !$0.value.lost }
            guard !held.isEmpty else { return [] }
            let commands = held.map { worker, lease in
                RedisScripts.command(lease.confirmed ? RedisScripts.renewLease : RedisScripts.acquireLease,
                                     keys: [keys.lease(of: worker)], arguments: [.string(value), .integer(ttl)])
            }
            let replies = client.send(commands)
            return zip(held, replies).map { ($0.0.key, $0.0.value.generation, $0.0.value.confirmed, $0.1) }
        }
        for (worker, generation, confirmed, reply) in sent {
            reply.whenSuccess { reply in
                guard let answer = try? LeaseAnswer(reply) else { return }
                self.leaseAnswered(worker, generation: generation, wasConfirmed: confirmed, answer)
            }
        }
    }

    private func leaseAnswered(_ worker: WorkerID, generation: UInt64, wasConfirmed: Bool, _ answer: LeaseAnswer) {
        let lost = leaseTable.withLock { table -> (String, @Sendable (String) -> Void)? in
            guard var lease = table.leases[worker], lease.generation == generation, !lease.lost else { return nil }
            let reason: String
            switch answer {
            case .granted:
                lease.confirmed = true
                table.leases[worker] = lease
                return nil
            case .unknown:
                return nil
            case .heldBy(let holder, _) where holder.isEmpty:
                reason = "its writer lease expired in Redis (not renewed within \(configuration.leaseTTL.nanoseconds / 1_000_000) ms)"
            case .heldBy(let holder, _):
                reason = wasConfirmed ? "gateway \(holder) took over its writer lease"
                                      : "gateway \(holder) held its writer lease while Redis was out of reach"
            }
            lease.lost = true
            lease.staleClaims += lease.claims
            lease.claims = 0
            table.leases[worker] = lease
            return (reason, lease.onLost)
        }
        guard let (reason, onLost) = lost else { return }
        logger.error("writer lease lost: this gateway writes the worker's run no more", metadata: ["worker": "\(worker)", "reason": "\(reason)"])
        fenceOpenRuns(of: worker)
        onLost(reason)
    }

    /// Redis refused a batch of `worker` because `holder` holds its writer lease (`RedisScripts.recordAppend`):
    /// the lease is lost, as when a renewal finds it taken (the renewal would find it within a third of
    /// the TTL): the worker's open runs are fenced and the bus told.
    func writerFenced(_ worker: WorkerID, holder: String) {
        let lost = leaseTable.withLock { table -> (@Sendable (String) -> Void)? in
            guard var lease = table.leases[worker], !lease.lost else { return nil }
            lease.lost = true
            lease.staleClaims += lease.claims
            lease.claims = 0
            table.leases[worker] = lease
            return lease.onLost
        }
        let reason = "gateway \(holder) took over its writer lease (Redis refused this gateway's batch)"
        logger.error("writer lease lost: this gateway writes the worker's run no more", metadata: ["worker": "\(worker)", "reason": "\(reason)"])
        fenceOpenRuns(of: worker)
        lost?(reason)
    }

    /// Stops writing `worker`'s open runs: what is queued for them is dropped, later appends and ends
    /// are ignored (another gateway writes those runs now).
    private func fenceOpenRuns(of worker: WorkerID) {
        let (released, flushed) = state.withLock { state -> ([RedisWriteWaiter], [EventLoopPromise<Void>]) in
            var released: [RedisWriteWaiter] = []
            for (id, entry) in state.runs where id.worker == worker && entry.isOpen {
                state.fencedRuns.insert(id)
                state.runs[id]!.isOpen = false
            }
            var kept: [RedisWriteOperation] = []
            for operation in state.queue {
                if state.fencedRuns.contains(operation.runID) {
                    released += state.finish(operation, written: false)
                } else {
                    kept.append(operation)
                }
            }
            state.queue = kept
            for id in state.fencedRuns where id.worker == worker && state.runs[id] != nil {
                released += state.runs[id]!.takeWaitersIfIdle()
            }
            return (released, state.takeFlushWaiters())
        }
        for waiter in released { waiter.promise.succeed() }
        for promise in flushed { promise.succeed() }
    }

    /// Deletes every lease this gateway holds (a gateway stopping: others may take its runs at once),
    /// waiting up to `leaseTimeout`. With `releasing` false they are left to expire (a crash, in tests).
    func closeLeases(releasing: Bool) {
        let value = instanceName
        let sent = leaseTable.withLock { table -> [EventLoopFuture<RESPValue>] in
            defer { table.closed = true; table.leases = [:] }
            guard releasing, client.isConnected else { return [] }
            let held = table.leases.filter { !$0.value.lost }.keys
            return client.send(held.map { RedisScripts.command(RedisScripts.releaseLease, keys: [keys.lease(of: $0)], arguments: [.string(value)]) })
        }
        guard !sent.isEmpty else { return }
        _ = try? EventLoopFuture.whenAllComplete(sent, on: loop).wait()
    }
}

/// What a lease script answered: `{1, holder}` (ours) or `{0, holder, pttl}` (another's; an empty
/// holder: none, the lease expired).
enum LeaseAnswer: Equatable {
    case granted
    case heldBy(String, remainingMilliseconds: Int64)
    /// Redis could not be asked.
    case unknown

    init(_ reply: RESPValue) throws {
        guard let parts = reply.array, parts.count >= 2, let flag = parts[0].int else {
            throw RedisError.unexpectedReply("a lease script answered: \(reply)")
        }
        if flag == 1 {
            self = .granted
        } else {
            self = .heldBy(parts[1].string ?? "", remainingMilliseconds: parts.count > 2 ? parts[2].int ?? 0 : 0)
        }
    }
}
