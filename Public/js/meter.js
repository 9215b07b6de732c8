// A records-per-second meter over a sliding window.

export class RateMeter {
  #buckets = [];
  #windowMs;
  #bucketMs;

  constructor({ windowMs = 5000, bucketMs = 250 } = {}) {
    this.#windowMs = windowMs;
    this.#bucketMs = bucketMs;
  }

  /** Counts `n` events now. */
  add(n, now = performance.now()) {
    const slot = Math.floor(now / this.#bucketMs);
    const last = this.#buckets[this.#buckets.length - 1];
    if (last && last.slot === slot) last.count += n;
    else this.#buckets.push({ slot, count: n });
    this.#prune(now);
  }

  /** Events per second over the window. */
  rate(now = performance.now()) {
    this.#prune(now);
    if (this.#buckets.length === 0) return 0;
    let total = 0;
    for (const bucket of this.#buckets) total += bucket.count;
    const span = Math.min(this.#windowMs, now - this.#buckets[0].slot * this.#bucketMs);
    return total / Math.max(span, 1000) * 1000;
  }

  reset() {
    this.#buckets = [];
  }

  #prune(now) {
    const oldest = Math.floor((now - this.#windowMs) / this.#bucketMs);
    let drop = 0;
    while (drop < this.#buckets.length && this.#buckets[drop].slot < oldest) drop++;
    if (drop) this.#buckets.splice(0, drop);
  }
}

/** `1234.5` → `"1,235"`, small rates with one decimal. */
export function formatRate(rate) {
  return rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toFixed(1);
}
