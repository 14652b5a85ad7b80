// Counting structures of the benchmark's sinks and load generator, sized for tens of millions of
// observations (the soak) in fixed or compact memory: a set of 64-bit fingerprints, a latency
// histogram, and a timeline of arrivals.
import type { LatencySummary } from './messages.js';

/** FNV-1a over the string's UTF-16 code units, with two different offsets: a 64-bit fingerprint as two 32-bit halves. */
function fingerprint(text: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  // 0 marks an empty slot: never a fingerprint.
  return [a >>> 0 || 1, b >>> 0];
}

/**
 * A set of strings kept as 64-bit fingerprints in an open-addressing table: 16 bytes per
 * entry at most, where a JS Set of 32-character ids costs about 100 and stops at 2^24 entries.
 * Two different ids collide with probability about n²/2^65 (1e-5 for 24 million).
 */
export class FingerprintSet {
  private table = new Uint32Array(2 * 1024 * 1024);
  private used = 0;

  get size(): number {
    return this.used;
  }

  /** Adds the string; false when it was already there. */
  add(text: string): boolean {
    const [hi, lo] = fingerprint(text);
    if (!this.insert(this.table, hi, lo)) return false;
    this.used += 1;
    if (this.used * 10 > (this.table.length / 2) * 7) this.grow();
    return true;
  }

  private insert(table: Uint32Array, hi: number, lo: number): boolean {
    const mask = table.length / 2 - 1;
    for (let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask; ; slot = (slot + 1) & mask) {
      const at = slot * 2;
      if (table[at] === 0) {
        table[at] = hi;
        table[at + 1] = lo;
        return true;
      }
      if (table[at] === hi && table[at + 1] === lo) return false;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    for (let at = 0; at < old.length; at += 2) if (old[at] !== 0) this.insert(this.table, old[at] as number, old[at + 1] as number);
  }
}

/**
 * Milliseconds in buckets: 1 ms up to 1 s, 10 ms up to 100 s, 1 s up to 2 h (above: the last
 * bucket). Percentiles are the bucket's upper bound; the maximum is exact.
 */
export class LatencyHistogram {
  private readonly buckets = new Uint32Array(1000 + 9900 + 7100);
  private count = 0;
  private max = 0;

  record(ms: number): void {
    const value = Math.max(0, Math.round(ms));
    this.count += 1;
    if (value > this.max) this.max = value;
    this.buckets[Math.min(this.buckets.length - 1, LatencyHistogram.index(value))]! += 1;
  }

  private static index(ms: number): number {
    if (ms < 1000) return ms;
    if (ms < 100_000) return 1000 + Math.floor((ms - 1000) / 10);
    return 10_900 + Math.floor((ms - 100_000) / 1000);
  }

  private static upperBound(index: number): number {
    if (index < 1000) return index;
    if (index < 10_900) return 1000 + (index - 1000) * 10 + 9;
    return 100_000 + (index - 10_900) * 1000 + 999;
  }

  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i] as number;
      if (seen >= rank) return Math.min(this.max, LatencyHistogram.upperBound(i));
    }
    return this.max;
  }

  summary(): LatencySummary {
    return { count: this.count, p50: this.percentile(50), p99: this.percentile(99), max: this.max };
  }
}

/** Arrivals counted per 50 ms slot since `origin`: how many arrived in any window. */
export class ArrivalTimeline {
  private static readonly slotMs = 50;
  private slots = new Uint32Array(4096);
  first: number | null = null;
  last: number | null = null;

  constructor(private readonly origin: number) {}

  record(at: number, count: number): void {
    if (count === 0) return;
    const slot = Math.max(0, Math.floor((at - this.origin) / ArrivalTimeline.slotMs));
    while (slot >= this.slots.length) {
      const bigger = new Uint32Array(this.slots.length * 2);
      bigger.set(this.slots);
      this.slots = bigger;
    }
    this.slots[slot]! += count;
    this.first ??= at;
    this.last = at;
  }

  /** The counts per slot, up to the last non-empty one. */
  export(): { origin: number; slotMs: number; counts: number[] } {
    let end = this.slots.length;
    while (end > 0 && this.slots[end - 1] === 0) end -= 1;
    return { origin: this.origin, slotMs: ArrivalTimeline.slotMs, counts: Array.from(this.slots.subarray(0, end)) };
  }
}
