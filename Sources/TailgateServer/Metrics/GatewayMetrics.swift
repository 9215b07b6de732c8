import CoreMetrics
import NIOCore
import Prometheus
import TailgateCore

/// The gateway's metrics, made through the swift-metrics API and kept in a Prometheus registry that
/// `GET /metrics` serves (names and meanings: docs/PROTOCOL.md, "Metrics").
///
/// The hot path is not instrumented for them: the gateway keeps its cheap atomic counters
/// (`GatewayStatistics`, each loop's `StreamDeliveryCounters`, the workers' seqs), and a scrape reads
/// them and brings the swift-metrics counters and gauges up to date. The two histograms are fed by
/// samples: publish-to-write latency about once per batch, event-loop delay four times a second.
public final class GatewayMetrics: Sendable {
    /// The registry `/metrics` renders. Metrics of the embedding program made with
    /// `PrometheusMetricsFactory(registry: server.metrics.registry)` (or a `MetricsSystem` bootstrapped
    /// with it) are served too.
    public let registry: PrometheusCollectorRegistry
    /// Whether per-worker series (labelled `worker`) are kept.
    public let perWorker: Bool
    let factory: PrometheusMetricsFactory
    /// Record timestamp → `logs` message written to a stream's socket, sampled about once per batch.
    let publishToWrite: CoreMetrics.Timer
    /// How late each event loop runs a task scheduled for a given moment.
    let eventLoopDelay: CoreMetrics.Timer
    /// When these metrics began: runs started before are counted from the first scrape that sees them.
    private let startedAt: Timestamp
    private let scrape: Lock<ScrapeState>

    static let publishToWriteBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let eventLoopDelayBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1),
    ]

    /// Metrics kept in `registry` (a new one by default); `perWorker` adds the per-worker series.
    init(perWorker: Bool = false, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.perWorker = perWorker
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "tailgate_publish_to_write_seconds": Self.publishToWriteBuckets,
            "tailgate_event_loop_delay_seconds": Self.eventLoopDelayBuckets,
        ]
        self.factory = factory
        publishToWrite = CoreMetrics.Timer(label: "tailgate_publish_to_write_seconds", factory: factory)
        eventLoopDelay = CoreMetrics.Timer(label: "tailgate_event_loop_delay_seconds", factory: factory)
        startedAt = Timestamp.now()
        scrape = Lock(ScrapeState(factory: factory))
    }

    /// Brings every metric up to date from the gateway's counters and renders the registry in the
    /// Prometheus text format.
    func render(_ gateway: GatewayContext) -> ByteBuffer {
        let bytes = scrape.withLock { state -> [UInt8] in
            // Read, applied and rendered under one lock: scrapes at once never apply older readings
            // after newer ones, nor show a half-updated set.
            state.update(with: ScrapeInput(gateway, perWorker: perWorker, startedAt: startedAt))
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return bytes
        }
        return ByteBuffer(bytes: bytes)
    }
}

/// Everything a scrape reads from the gateway.
struct ScrapeInput: Sendable {
    /// Values of the counters and unlabelled gauges that follow one reading each, by metric name.
    var statistics: [String: Int] = [:]
    var ingest = (accepted: 0, rejected: 0, duplicates: 0)
    var refusals: [RefusalCounters.Series]
    var delivered = (records: 0, payloadBytes: 0, wireBytes: 0)
    var workers: [WorkerSnapshot]
    var ringBytes: Int
    var ringShare: Int
    var store: StoreHealth?
    var ready: Bool
    var startedAt: Timestamp
    var perWorker: Bool

    init(_ gateway: GatewayContext, perWorker: Bool, startedAt: Timestamp) {
        let statistics = gateway.statistics
        for (name, counter) in GatewayMetricNames.mirroredCounters {
            self.statistics[name] = counter(statistics)
        }
        self.statistics["tailgate_connections_open"] = gateway.limiter.openConnections
        self.statistics["tailgate_streams_open"] = statistics.streamsOpen.load(ordering: .relaxed)
        self.statistics["tailgate_max_buffered_bytes_per_stream"] = statistics.maxBufferedBytesPerStream.load(ordering: .relaxed)
        ingest = (statistics.ingestAccepted.load(ordering: .relaxed), statistics.ingestRejected.load(ordering: .relaxed),
                  statistics.ingestDuplicates.load(ordering: .relaxed))
        refusals = statistics.refusalsByCode.snapshot()
        for registry in gateway.registries {
            delivered.records += registry.delivery.records.load(ordering: .relaxed)
            delivered.payloadBytes += registry.delivery.payloadBytes.load(ordering: .relaxed)
            delivered.wireBytes += registry.delivery.wireBytes.load(ordering: .relaxed)
        }
        workers = gateway.bus.allWorkers().map { $0.snapshot() }
        let ring = gateway.bus.ringMemory()
        ringBytes = ring.total
        ringShare = ring.sharePerWorker ?? 0
        store = gateway.bus.store?.health()
        ready = GatewayReadiness.notReadyReason(phase: gateway.readiness.phase, store: store) == nil
        self.startedAt = startedAt
        self.perWorker = perWorker
    }
}

/// The swift-metrics handles of a registry and what the last scrape saw, guarded by the scrape lock.
struct ScrapeState: Sendable {
    private let factory: PrometheusMetricsFactory
    private var counters: [String: FollowedCounter] = [:]
    private var gauges: [String: CoreMetrics.Gauge] = [:]
    /// Refusal series, made when their count first moves.
    private var refusals: [String: FollowedCounter] = [:]
    /// Each live run's seq at its first scrape (its baseline) and at the last one.
    private var runs: [RunID: (baseline: UInt64, lastSeq: UInt64, dropped: UInt64)] = [:]
    private var workerSeries: [WorkerID: WorkerSeries] = [:]

    init(factory: PrometheusMetricsFactory) {
        self.factory = factory
        for name in GatewayMetricNames.mirroredCounters.map(\.name) + GatewayMetricNames.derivedCounters {
            counters[name] = FollowedCounter(CoreMetrics.Counter(label: name, factory: factory))
        }
        for name in GatewayMetricNames.gauges {
            gauges[name] = CoreMetrics.Gauge(label: name, factory: factory)
        }
        for outcome in ["accepted", "rejected", "duplicate"] {
            counters["ingest:\(outcome)"] = FollowedCounter(CoreMetrics.Counter(
                label: "tailgate_ingest_records_total", dimensions: [("outcome", outcome)], factory: factory))
        }
        for state in ["running", "stopped"] {
            for owner in [WorkerOwner.inProcess, .remote] {
                gauges["workers:\(state):\(owner.rawValue)"] = CoreMetrics.Gauge(
                    label: "tailgate_workers", dimensions: [("state", state), ("owner", owner.rawValue)], factory: factory)
            }
        }
        for state in ["memory-only", "ok", "failed"] {
            gauges["store:\(state)"] = CoreMetrics.Gauge(label: "tailgate_store_state", dimensions: [("state", state)], factory: factory)
        }
    }

    mutating func update(with input: ScrapeInput) {
        for (name, value) in input.statistics {
            if let gauge = gauges[name] { gauge.record(value) } else { counters[name]?.follow(value) }
        }
        counters["ingest:accepted"]?.follow(input.ingest.accepted)
        counters["ingest:rejected"]?.follow(input.ingest.rejected)
        counters["ingest:duplicate"]?.follow(input.ingest.duplicates)
        for series in input.refusals where series.count > 0 {
            let key = "\(series.code) \(series.status)"
            if refusals[key] == nil {
                refusals[key] = FollowedCounter(CoreMetrics.Counter(
                    label: "tailgate_http_refusals_total", dimensions: [("code", series.code), ("status", series.status)], factory: factory))
            }
            refusals[key]?.follow(series.count)
        }
        counters["tailgate_records_delivered_total"]?.follow(input.delivered.records)
        counters["tailgate_stream_payload_bytes_total"]?.follow(input.delivered.payloadBytes)
        counters["tailgate_stream_wire_bytes_total"]?.follow(input.delivered.wireBytes)
        gauges["tailgate_ring_bytes"]?.record(input.ringBytes)
        gauges["tailgate_ring_bytes_share_per_worker"]?.record(input.ringShare)
        gauges["tailgate_ready"]?.record(input.ready ? 1 : 0)
        updateStore(input.store)
        updateWorkers(input)
    }

    private mutating func updateStore(_ store: StoreHealth?) {
        let state = store?.state ?? "memory-only"
        for known in ["memory-only", "ok", "failed"] {
            gauges["store:\(known)"]?.record(known == state ? 1 : 0)
        }
        gauges["tailgate_store_bytes"]?.record(store?.storedBytes ?? 0)
        gauges["tailgate_store_runs"]?.record(store?.runs ?? 0)
        gauges["tailgate_store_write_queue"]?.record(store?.writeQueue ?? 0)
        counters["tailgate_store_failed_writes_total"]?.follow(Int(clamping: store?.failedWrites ?? 0))
    }

    /// Records published are the workers' seqs: each run counts from 0 when it began in this process,
    /// else from its seq at the first scrape that sees it. Runs no longer held are forgotten.
    private mutating func updateWorkers(_ input: ScrapeInput) {
        var byState: [String: Int] = [:]
        var published: UInt64 = 0
        var dropped: UInt64 = 0
        var seen: [RunID: (baseline: UInt64, lastSeq: UInt64, dropped: UInt64)] = [:]
        seen.reserveCapacity(input.workers.count)
        for worker in input.workers {
            byState["workers:\(worker.state.rawValue):\(worker.owner.rawValue)", default: 0] += 1
            let run = RunID(worker: worker.id, epoch: worker.epoch)
            let baseline = worker.startedAt < input.startedAt ? worker.lastSeq : 0
            var entry = runs[run] ?? (baseline: baseline, lastSeq: baseline, dropped: 0)
            if worker.lastSeq > entry.lastSeq { published += worker.lastSeq - entry.lastSeq }
            if worker.droppedBeforeRing > entry.dropped { dropped += worker.droppedBeforeRing - entry.dropped }
            entry.lastSeq = max(entry.lastSeq, worker.lastSeq)
            entry.dropped = max(entry.dropped, worker.droppedBeforeRing)
            seen[run] = entry
        }
        runs = seen
        counters["tailgate_records_published_total"]?.add(Int(clamping: published))
        counters["tailgate_records_dropped_before_ring_total"]?.add(Int(clamping: dropped))
        for state in ["running", "stopped"] {
            for owner in [WorkerOwner.inProcess, .remote] {
                let key = "workers:\(state):\(owner.rawValue)"
                gauges[key]?.record(byState[key] ?? 0)
            }
        }
        if input.perWorker { updatePerWorker(input) }
    }

    private mutating func updatePerWorker(_ input: ScrapeInput) {
        var held = Set<WorkerID>()
        for worker in input.workers {
            held.insert(worker.id)
            let run = runs[RunID(worker: worker.id, epoch: worker.epoch)]
            let count = Int(clamping: worker.lastSeq - min(worker.lastSeq, run?.baseline ?? 0))
            if workerSeries[worker.id] == nil { workerSeries[worker.id] = WorkerSeries(worker.id, epoch: worker.epoch, factory: factory) }
            workerSeries[worker.id]?.update(worker, publishedInRun: count)
        }
        for (id, series) in workerSeries where !held.contains(id) {
            series.destroy()
            workerSeries[id] = nil
        }
    }
}

/// The per-worker series of one worker id (`--metrics-per-worker`).
private struct WorkerSeries: Sendable {
    var published: FollowedCounter
    let subscribers: CoreMetrics.Gauge
    let ringBytes: CoreMetrics.Gauge
    var epoch: String

    init(_ id: WorkerID, epoch: String, factory: PrometheusMetricsFactory) {
        let labels = [("worker", id.rawValue)]
        published = FollowedCounter(CoreMetrics.Counter(label: "tailgate_worker_records_published_total", dimensions: labels, factory: factory))
        subscribers = CoreMetrics.Gauge(label: "tailgate_worker_subscribers", dimensions: labels, factory: factory)
        ringBytes = CoreMetrics.Gauge(label: "tailgate_worker_ring_bytes", dimensions: labels, factory: factory)
        self.epoch = epoch
    }

    /// A new run of the id starts its counter over (a counter reset, as after a restart).
    mutating func update(_ worker: WorkerSnapshot, publishedInRun count: Int) {
        if worker.epoch != epoch {
            epoch = worker.epoch
            published.reset()
        }
        published.follow(count)
        subscribers.record(worker.subscribers)
        ringBytes.record(worker.ringBytes)
    }

    func destroy() {
        published.counter.destroy()
        subscribers.destroy()
        ringBytes.destroy()
    }
}

/// A swift-metrics counter that follows a count read at scrape time: each scrape adds what the count
/// grew by since the last one.
struct FollowedCounter: Sendable {
    let counter: CoreMetrics.Counter
    private var last = 0

    init(_ counter: CoreMetrics.Counter) { self.counter = counter }

    /// Adds what `value` grew by (a count never shrinks; if it seems to, nothing is added).
    mutating func follow(_ value: Int) {
        if value > last { counter.increment(by: value - last) }
        last = max(last, value)
    }

    /// Adds `amount` (a count summed from several sources).
    mutating func add(_ amount: Int) {
        if amount > 0 { counter.increment(by: amount) }
    }

    /// Starts over at 0.
    mutating func reset() {
        counter.reset()
        last = 0
    }
}

/// The names of the metrics that follow one value each.
enum GatewayMetricNames {
    /// Counters that follow one of `GatewayStatistics`' atomics.
    static let mirroredCounters: [(name: String, read: @Sendable (GatewayStatistics) -> Int)] = [
        ("tailgate_connections_accepted_total", { $0.connectionsAccepted.load(ordering: .relaxed) }),
        ("tailgate_connections_dropped_total", { $0.connectionsDropped.load(ordering: .relaxed) }),
        ("tailgate_streams_opened_total", { $0.streamsOpened.load(ordering: .relaxed) }),
        ("tailgate_gaps_total", { $0.gaps.load(ordering: .relaxed) }),
        ("tailgate_partial_frames_total", { $0.partialFrames.load(ordering: .relaxed) }),
        ("tailgate_stored_chunks_sent_total", { $0.storedChunks.load(ordering: .relaxed) }),
        ("tailgate_stalled_closes_total", { $0.stalledCloses.load(ordering: .relaxed) }),
        ("tailgate_too_big_closes_total", { $0.tooBigCloses.load(ordering: .relaxed) }),
        ("tailgate_deflate_compressions_total", { $0.compressions.load(ordering: .relaxed) }),
        ("tailgate_deflate_input_bytes_total", { $0.compressedInputBytes.load(ordering: .relaxed) }),
        ("tailgate_deflate_output_bytes_total", { $0.compressedOutputBytes.load(ordering: .relaxed) }),
        ("tailgate_inflated_messages_total", { $0.inflatedMessages.load(ordering: .relaxed) }),
        ("tailgate_ingest_pauses_total", { $0.ingestPauses.load(ordering: .relaxed) }),
        ("tailgate_idle_publisher_closes_total", { $0.idlePublisherCloses.load(ordering: .relaxed) }),
        ("tailgate_accept_backoffs_total", { $0.acceptBackoffs.load(ordering: .relaxed) }),
    ]
    /// Counters summed from several sources at each scrape.
    static let derivedCounters = [
        "tailgate_records_published_total", "tailgate_records_dropped_before_ring_total", "tailgate_records_delivered_total",
        "tailgate_stream_payload_bytes_total", "tailgate_stream_wire_bytes_total", "tailgate_store_failed_writes_total",
    ]
    /// Gauges without labels.
    static let gauges = [
        "tailgate_connections_open", "tailgate_streams_open", "tailgate_max_buffered_bytes_per_stream", "tailgate_ring_bytes",
        "tailgate_ring_bytes_share_per_worker", "tailgate_store_bytes", "tailgate_store_runs", "tailgate_store_write_queue",
        "tailgate_ready",
    ]
}
