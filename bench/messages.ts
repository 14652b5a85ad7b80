// The messages the benchmark's parent process and its children (sinks, load generator) exchange
// over IPC. Types only: every child is a separate process that imports nothing from src/.

/** A question from the parent; the child answers with `{ replyTo: id, ... }`. */
export interface Question<T extends string = string> {
  readonly id: number;
  readonly type: T;
}

export type SinkKind = 'webhook' | 'segment' | 's3';

export interface SinkCounts {
  /** Unique impression ids acknowledged (2xx), summed over paths (destinations). */
  readonly unique: number;
  /** Unique ids per path (one path per destination). */
  readonly perPath: Record<string, number>;
  /** Unique ids seen while answering 503 (failing mode), summed over paths. */
  readonly attempted: number;
  readonly requests: number;
  readonly invalidSignatures: number;
  /** Arrivals of an id already counted. */
  readonly duplicates: number;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface SinkReport extends SinkCounts {
  readonly kind: SinkKind;
  /** now − receptionTimestamp at the sink, ms, one observation per unique id. */
  readonly latencyMs: LatencySummary;
  /** Epoch ms of the first and last unique arrival. */
  readonly firstArrival: number | null;
  readonly lastArrival: number | null;
  /** Unique arrivals per `slotMs` slot from `origin` (epoch ms). */
  readonly timeline: { readonly origin: number; readonly slotMs: number; readonly counts: readonly number[] };
}

export interface LoadSpec {
  /** Base URLs of the API processes; requests go round-robin. */
  readonly targets: readonly string[];
  /** SDK keys; request i uses key i mod length (one per environment). */
  readonly sdkKeys: readonly string[];
  readonly perRequest: number;
  readonly concurrency: number;
  /** Stop after this many impressions… */
  readonly total?: number;
  /** …or after this long (soak). */
  readonly durationMs?: number;
  /** Pace at this many impressions/s (default: as fast as answers come). */
  readonly impressionsPerSecond?: number;
  /** Makes every key of this load unique in the whole run. */
  readonly tag: string;
  readonly flag: string;
}

export interface LoadResult {
  readonly requests: number;
  readonly acceptedRequests: number;
  readonly acceptedImpressions: number;
  /** Accepted impressions per SDK key index. */
  readonly acceptedPerKey: readonly number[];
  /** HTTP status (or `error`) → count, retries included. */
  readonly statuses: Record<string, number>;
  /** First refusal other than 503 (a benchmark bug: bad body or key), with its answer. */
  readonly firstRefusal: string | null;
  readonly startedAt: number;
  readonly finishedAt: number;
  /** Time to answer one accepted request, ms. */
  readonly answerMs: LatencySummary;
}
