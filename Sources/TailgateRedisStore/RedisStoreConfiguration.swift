#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import TailgateCore
import TailgateRedis

/// Settings of the shared store on Redis (`--store redis://…`), each with a documented default.
public struct RedisStoreConfiguration: Sendable {
    /// The server and how to reach it (parsed from the `redis://` URL).
    public var redis: RedisConfiguration
    /// The first part of every key (`tailgate:{worker}:…`); several fleets can share one Redis with
    /// different prefixes. Default `tailgate`.
    public var keyPrefix: String
    /// Runs that ended longer ago than this are deleted. `nil`: kept regardless of age. Default 14 days.
    public var retainAge: TimeAmount?
    /// The most bytes of records the fleet keeps in Redis; over it, the oldest finished runs go first,
    /// then the oldest entries of running runs (`XTRIM MINID`). `nil`: no limit. Default 1 GiB (Redis
    /// holds everything in memory: size it with docs/REDIS.md).
    public var retainBytes: Int?
    /// How often retention runs, the list of runs is refreshed from Redis (to see other gateways' runs),
    /// and a store that lost Redis retries. Default 5 s.
    public var maintenanceInterval: TimeAmount
    /// The most bytes of batches waiting for Redis's acknowledgement (queued or in flight). Beyond it,
    /// batches are dropped for Redis (kept in memory only) and the store reports `failed`. Default 64 MiB.
    public var writeQueueBytes: Int
    /// The most operations sent in one pipeline. Default 512.
    public var pipelineLimit: Int
    /// How long `close()` waits for queued batches to be acknowledged. Default 5 s.
    public var closeTimeout: TimeAmount
    /// How long a gateway's writer lease on a worker lasts without renewal (`P:{W}:lease`, `SET NX PX`):
    /// the holder renews it every third of it; a gateway that dies holds its workers' runs this long
    /// before another gateway may continue them. Default 10 s.
    public var leaseTTL: TimeAmount
    /// How long taking a lease may wait for Redis before it is granted provisionally (the publisher's
    /// request waits that long at most, once per worker). Default 2 s.
    public var leaseTimeout: TimeAmount
    /// Names this gateway in the leases it holds, for people reading a refusal or the key (a random
    /// id is put before it, unique per process). Default `pid <pid>`; `tailgate serve` adds its address.
    public var instanceLabel: String

    public init(redis: RedisConfiguration, keyPrefix: String = "tailgate", retainAge: TimeAmount? = .hours(24 * 14),
                retainBytes: Int? = 1 << 30, maintenanceInterval: TimeAmount = .seconds(5), writeQueueBytes: Int = 64 << 20,
                pipelineLimit: Int = 512, closeTimeout: TimeAmount = .seconds(5), leaseTTL: TimeAmount = .seconds(10),
                leaseTimeout: TimeAmount = .seconds(2), instanceLabel: String = "pid \(getpid())") {
        self.redis = redis
        self.keyPrefix = keyPrefix
        self.retainAge = retainAge
        self.retainBytes = retainBytes
        self.maintenanceInterval = maintenanceInterval
        self.writeQueueBytes = writeQueueBytes
        self.pipelineLimit = pipelineLimit
        self.closeTimeout = closeTimeout
        self.leaseTTL = leaseTTL
        self.leaseTimeout = leaseTimeout
        self.instanceLabel = instanceLabel
    }

    /// Settings from a `redis://[user:password@]host[:port][/db]` URL, with the defaults above.
    public init(url: String) throws(RedisError) {
        self.init(redis: try RedisConfiguration(url: url))
    }

    /// `url` with its password replaced by `***` (`redis://u:***@h:6379/2`): how a `--store` URL is shown.
    public static func redactedURL(_ url: String) -> String {
        RedisConfiguration.redacted(url)
    }

    /// Throws every problem of these settings.
    public func validate() throws(ConfigurationError) {
        var check = ConfigurationCheck()
        check.require(!keyPrefix.isEmpty && !keyPrefix.contains("{") && !keyPrefix.contains("}"), "keyPrefix",
                      "must not be empty nor hold { or }")
        check.require(retainAge.map { $0 > .zero } ?? true, "retainAge", "must be longer than 0")
        check.require((retainBytes ?? Int.max) >= 1 << 20, "retainBytes", "must be at least 1 MiB")
        check.require(maintenanceInterval > .zero, "maintenanceInterval", "must be longer than 0")
        check.require(writeQueueBytes >= 1 << 16, "writeQueueBytes", "must be at least 64 KiB")
        check.require(pipelineLimit, in: 1...100_000, "pipelineLimit")
        check.require(closeTimeout >= .zero, "closeTimeout", "must not be negative")
        check.require(leaseTTL >= .milliseconds(300), "leaseTTL", "must be at least 300 ms")
        check.require(leaseTimeout > .zero, "leaseTimeout", "must be longer than 0")
        check.require(instanceLabel.utf8.count <= 200, "instanceLabel", "must be at most 200 bytes")
        try check.throwIfAny()
    }
}
