import NIOCore

/// A worker that mirrors a run another gateway writes (a store shared by several gateways, see
/// docs/REDIS.md "Any gateway serves any worker"): the same `Worker`, ring and fan-out, but its ring is
/// filled with the batches the store gives as the writer stores them (`RunStore.follow`), read once per
/// gateway whatever the number of subscribers, and its seqs, epoch and ending are the writer's. Nothing
/// is published into it and it writes nothing to the store. When the writer's lease passes to this
/// gateway (`promote`), the same worker becomes the run's writer: its subscribers stay and see the seqs
/// go on.
extension Worker {
    /// Whether the worker mirrors a run another gateway writes.
    public var isMirror: Bool { ingress.withLock { $0.mirroring } }

    /// Starts following the run through the store, after the last seq the ring was made with.
    func startFollowing() {
        guard let store else { return }
        let following = store.follow(runID, after: ring.withLock { $0.buffer.lastSeq }, on: loop) { [weak self] event in
            self?.followed(event)
        }
        self.following.withLock { $0 = following }
    }

    /// How long the mirror has had no subscriber, as of `now` (zero while it has one).
    func unwatched(since now: NIODeadline) -> TimeAmount {
        let watched = fanOut.subscriberCount > 0
        return unwatchedSince.withLock { since in
            if watched { since = nil; return .zero }
            guard let start = since else { since = now; return .zero }
            return now - start
        }
    }

    /// Stops following the run (the worker stopped, was promoted or is let go).
    func stopFollowing() {
        following.withLock { following in
            following?.cancel()
            following = nil
        }
    }

    /// One event of the followed run, on the loop.
    func followed(_ event: FollowedRunEvent) {
        loop.assertInEventLoop()
        switch event {
        case .batch(var batch):
            let appended = ring.withLock { state -> Bool in
                guard batch.lastSeq > state.buffer.lastSeq else { return false }
                // Batches are whole stream entries and never overlap; a partial one is cut, not trapped on.
                if batch.firstSeq <= state.buffer.lastSeq {
                    batch = batch.slice(from: state.buffer.lastSeq + 1, through: batch.lastSeq, maxBytes: .max)
                }
                state.append(batch)
                return true
            }
            guard appended else { return }
            ingress.withLock { state in state.nextSeq = max(state.nextSeq, batch.lastSeq + 1) }
            let now = loop.now
            remotePublishers.withLock { $0.lastChange = now }
            fanOut.deliver(batch)
            releaseHoldIfCaughtUp(force: false)
        case .ended(let run):
            // A promoted worker writes the run now: the end its follower saw is older than that.
            guard isMirror else { return }
            stopFollowing()
            if let run {
                stop(reason: run.reason ?? Worker.defaultStopReason, status: run.status == .running ? .interrupted : run.status,
                     exitCode: run.exitCode)
            } else {
                stop(reason: "the run is no longer in the shared store", status: .interrupted)
            }
        }
    }

    /// Whether this gateway wrote the run and handed it back (`handBack`): it then keeps the mirror
    /// (and ends the run as idle if nobody continues it within the bus's idle time).
    public var wasHandedBack: Bool { handedBack.withLock { $0 } }

    /// Gives up writing the run while it goes on (a store several gateways share): no publisher has
    /// been connected here for a while, so its publisher may be reaching another gateway (nginx sends a
    /// worker's publishing back to a gateway that restarted), which can only continue the run once this
    /// one lets go. The worker stops taking records and becomes a mirror of the run; once the store has
    /// every record it was given, `release` gives the writer's lease back, and the mirror follows the run
    /// from there. Returns false (nothing done) when records wait for a drain or the worker stops.
    func handBack(release: @escaping @Sendable () -> Void) -> Bool {
        let last = ingress.withLock { state -> UInt64? in
            guard !state.stopRequested, !state.mirroring, state.holdThrough == 0, state.drain == .idle,
                  state.pending.count == state.skipped else { return nil }
            state.mirroring = true
            return state.nextSeq - 1
        }
        guard let last else { return false }
        handedBack.withLock { $0 = true }
        whenStored(through: last, on: loop).whenComplete { _ in
            // The claim the worker held is given back (a publisher that came back meanwhile holds its own).
            release()
            // Unless a publisher came back meanwhile and the worker writes the run again.
            guard self.isMirror, !self.isStopping else { return }
            self.startFollowing()
        }
        return true
    }

    /// The writer's lease passed to this gateway: the worker continues `resumed` (this run, as the
    /// store has it now) as its writer. Records published from now on get seqs after
    /// `resumed.info.lastSeq`; they are drained once the ring holds the run up to there (the follower
    /// still brings what the previous writer stored last), or after `catchUpLimit` with a `gap` for
    /// what never came.
    func promote(_ resumed: ResumedRun, catchUpLimit: TimeAmount = .seconds(5)) {
        let now = loop.now
        ingress.withLock { state in
            state.mirroring = false
            state.nextSeq = max(state.nextSeq, resumed.info.lastSeq + 1)
            state.publisherOffsets.merge(resumed.publisherOffsets) { max($0, $1) }
            state.holdThrough = resumed.info.lastSeq
        }
        remotePublishers.withLock { $0.lastChange = now }
        loop.execute { self.releaseHoldIfCaughtUp(force: false) }
        loop.scheduleTask(in: catchUpLimit) { self.releaseHoldIfCaughtUp(force: true) }
    }

    /// Whether a drain must wait for the follower (called by `drain()` while a hold is set): true while
    /// the ring lacks records the previous writer stored; false once the hold is released.
    func holdsDrain() -> Bool {
        let hold = ingress.withLock { $0.holdThrough }
        guard hold > 0 else { return false }
        guard ring.withLock({ $0.buffer.lastSeq }) < hold else {
            releaseHoldIfCaughtUp(force: false)
            return false
        }
        ingress.withLock { $0.drain = .idle }
        return true
    }

    /// Once the ring holds the run up to the hold (or with `force`), the follower stops and the
    /// records published meanwhile are drained.
    private func releaseHoldIfCaughtUp(force: Bool) {
        let hold = ingress.withLock { $0.holdThrough }
        guard hold > 0, force || ring.withLock({ $0.buffer.lastSeq }) >= hold else { return }
        stopFollowing()
        let requestDrain = ingress.withLock { state -> Bool in
            state.holdThrough = 0
            return (state.pending.count > state.skipped || state.stopRequested) && state.scheduleDrain()
        }
        if requestDrain { drains.request(self) }
    }
}
