import TailgateRedis

/// The Lua scripts the store runs with `EVAL` (each touches one worker's keys only: one Cluster slot,
/// atomic). `EVAL` rather than `EVALSHA`: Redis caches the compiled script by its hash either way, and
/// a restarted Redis (empty script cache) needs no `NOSCRIPT` retry that could reorder a pipeline.
/// An append is `MULTI`, `XADD`, `EVAL recordAppend`, `EXEC`: atomic (and one unit in the AOF and for
/// replicas) without passing the batch's bytes through Lua.
enum RedisScripts {
    /// Accounts for one batch after its `XADD`, in the same `MULTI`/`EXEC`: moves `last_seq`,
    /// `stored_bytes` and the publishers' offsets, unless the run already holds the batch's seqs (a
    /// retry after a lost reply: the `XADD` was refused as a duplicate, and this does nothing either).
    /// Creates a minimal manifest for a run never begun (a publisher's first batch after a restart).
    /// Refuses when the run's key is not a stream (its `XADD` was refused: nothing to account for).
    ///
    /// The batch's bytes do not go through Lua: a 16 KB argument made `EVAL` cost 4 times the `XADD`
    /// it wrapped (docs/REDIS.md).
    ///
    /// Fencing: when the worker's writer lease is held by another gateway (this one lost it, e.g. during
    /// a Redis outage longer than the TTL, and another took the run over), the batch is taken back out
    /// (`XDEL`, and the stream's last id set back with `XSETID`, so the other gateway's next seqs are
    /// still accepted) and the script refuses with `FENCED <holder>`. A lease nobody holds (expired,
    /// not taken) does not fence: no one else writes the run.
    ///
    /// KEYS: stream, manifest, offsets, runs, lease. ARGV: first seq, last seq, byte count, epoch, now
    /// (µs), worker, this gateway's instance name, then publisher/offset pairs.
    static let recordAppend = """
        if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then
          return redis.error_reply('WRONGTYPE the run key holds no stream')
        end
        local last = tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0')
        if tonumber(ARGV[2]) <= last then return 0 end
        local holder = redis.call('GET', KEYS[5])
        if holder and holder ~= ARGV[7] then
          redis.call('XDEL', KEYS[1], ARGV[2] .. '-0')
          local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
          redis.call('XSETID', KEYS[1], top[1] and top[1][1] or '0-0')
          return redis.error_reply('FENCED ' .. holder)
        end
        if redis.call('EXISTS', KEYS[2]) == 0 then
          redis.call('HSET', KEYS[2], 'worker', ARGV[6], 'epoch', ARGV[4], 'owner', 'remote', 'started_at', ARGV[5],
                     'status', 'running', 'first_seq', ARGV[1], 'stored_bytes', 0)
          redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
        end
        redis.call('HSET', KEYS[2], 'last_seq', ARGV[2])
        redis.call('HINCRBY', KEYS[2], 'stored_bytes', ARGV[3])
        if #ARGV > 7 then redis.call('HSET', KEYS[3], unpack(ARGV, 8)) end
        return 1
        """

    /// The start of Redis's refusal of an `XADD` whose id is not above the stream's last: for the
    /// store, a batch already written.
    static let duplicateEntry = "ERR The ID specified in XADD is equal or smaller"
    /// The start of `recordAppend`'s refusal of a batch of a run another gateway writes now.
    static let fenced = "FENCED "

    /// Begins a run: its descriptive fields (`writer`: the instance name of the gateway beginning it),
    /// and its seqs unless the run is already stored.
    ///
    /// KEYS: manifest, runs. ARGV: epoch, started_at (µs), owner, worker, first seq, last seq, writer.
    static let begin = """
        redis.call('HSET', KEYS[1], 'worker', ARGV[4], 'epoch', ARGV[1], 'owner', ARGV[3], 'started_at', ARGV[2], 'status', 'running',
                   'writer', ARGV[7])
        redis.call('HDEL', KEYS[1], 'stopped_at', 'exit_code', 'reason')
        if not redis.call('HGET', KEYS[1], 'last_seq') then
          redis.call('HSET', KEYS[1], 'first_seq', ARGV[5], 'last_seq', ARGV[6], 'stored_bytes', 0)
        end
        redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
        return 1
        """

    /// Ends a run: status, time, reason, exit code (removed when empty).
    ///
    /// KEYS: manifest. ARGV: status, stopped_at (µs), reason, exit code or "".
    static let end = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], 'status', ARGV[1], 'stopped_at', ARGV[2], 'reason', ARGV[3])
        if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'exit_code') else redis.call('HSET', KEYS[1], 'exit_code', ARGV[4]) end
        return 1
        """

    /// Ends an in-process run whose gateway can write it no more, as `interrupted`: only while its
    /// manifest says `running` and `in-process`, and its worker's writer lease is gone (expired: the
    /// gateway died or lost Redis) or held by a gateway other than the run's `writer`. Checked and
    /// written in one script, so a gateway that takes the lease again first keeps its run. Remote runs
    /// are never ended here: their publisher continues them on another gateway.
    /// Returns `{1, reason}` when it ended the run, else `{0}`.
    ///
    /// KEYS: manifest, lease. ARGV: stopped_at (µs).
    static let endAbandoned = """
        if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'owner') ~= 'in-process' then return {0} end
        local writer = redis.call('HGET', KEYS[1], 'writer')
        local holder = redis.call('GET', KEYS[2])
        local reason
        if not holder then
          reason = 'the gateway writing this run stopped renewing its writer lease (gateway '
            .. (writer or 'of unknown name') .. ' died or lost Redis)'
        elseif writer and holder ~= writer then
          reason = 'the gateway writing this run (' .. writer .. ') lost its writer lease to gateway ' .. holder
        else
          return {0}
        end
        redis.call('HSET', KEYS[1], 'status', 'interrupted', 'stopped_at', ARGV[1], 'reason', reason)
        redis.call('HDEL', KEYS[1], 'exit_code')
        return {1, reason}
        """

    /// Deletes the oldest entries until at least `bytes` of records are freed (`XTRIM MINID` just past
    /// the last entry deleted), and moves the manifest's `first_seq` and `stored_bytes` with them.
    /// Returns the bytes freed.
    ///
    /// KEYS: stream, manifest. ARGV: bytes to free.
    static let trim = """
        local target = tonumber(ARGV[1])
        local freed = 0
        local cut = nil
        local start = '-'
        while freed < target do
          local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
          if #entries == 0 then break end
          for _, entry in ipairs(entries) do
            if freed >= target then break end
            local fields = entry[2]
            for i = 1, #fields, 2 do if fields[i] == 'b' then freed = freed + string.len(fields[i + 1]) end end
            cut = entry[1]
          end
          start = '(' .. cut
        end
        if cut == nil then return 0 end
        redis.call('XTRIM', KEYS[1], 'MINID', (tonumber(string.match(cut, '^(%d+)')) + 1) .. '-0')
        local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
        if #first > 0 then
          local fields = first[1][2]
          for i = 1, #fields, 2 do if fields[i] == 'f' then redis.call('HSET', KEYS[2], 'first_seq', fields[i + 1]) end end
        else
          redis.call('HSET', KEYS[2], 'first_seq', tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0') + 1)
        end
        redis.call('HINCRBY', KEYS[2], 'stored_bytes', -freed)
        return freed
        """

    /// Takes a writer lease when nobody holds it (`SET NX PX`), or extends it when we do; else says who
    /// holds it and for how long. Returns `{1, holder}` or `{0, holder, pttl}`.
    ///
    /// KEYS: lease. ARGV: our instance name, TTL in ms.
    static let acquireLease = """
        local holder = redis.call('GET', KEYS[1])
        if not holder then
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return {1, ARGV[1]}
        end
        if holder == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return {1, holder}
        end
        return {0, holder, redis.call('PTTL', KEYS[1])}
        """

    /// Extends a writer lease only while it is ours: never takes one that expired (its runs may have
    /// been written by another gateway since). Returns `{1, holder}`, or `{0, holder}` (`''`: none).
    ///
    /// KEYS: lease. ARGV: our instance name, TTL in ms.
    static let renewLease = """
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return {1, holder}
        end
        if not holder then return {0, '', 0} end
        return {0, holder, redis.call('PTTL', KEYS[1])}
        """

    /// Deletes a writer lease only while it is ours.
    ///
    /// KEYS: lease. ARGV: our instance name.
    static let releaseLease = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """

    /// `EVAL script numkeys keys… args…`.
    static func command(_ script: String, keys: [String], arguments: [RedisCommand.Argument]) -> RedisCommand {
        RedisCommand("EVAL", [.string(script), .integer(Int64(keys.count))] + keys.map { .string($0) } + arguments)
    }
}
