import type { Queues } from '../queues/queues.js';
import type { Metrics } from './metrics.js';

const states = ['waiting', 'prioritized', 'active', 'delayed', 'failed'] as const;

/**
 * Samples `flagstream_queue_jobs{queue,state}` for a scrape: one counting script per queue, at
 * most every `maxAgeMs` however often (and by however many scrapers) /metrics is read.
 */
export function createQueueDepthSampler(deps: { queues: readonly Queues[]; metrics: Metrics; clock: () => number; maxAgeMs?: number }) {
  const maxAgeMs = deps.maxAgeMs ?? 5_000;
  let sampledAt = Number.NEGATIVE_INFINITY;
  let sampling: Promise<void> | undefined;

  const sample = async (): Promise<void> => {
    // A partitioned deployment's queues count as one: the sum over its partitions.
    const counts = await Promise.all(deps.queues.map((queues) => Promise.all([queues.ingest.getJobCounts(...states), queues.delivery.getJobCounts(...states)])));
    for (const state of states) {
      deps.metrics.queueJobs.set({ queue: 'ingest', state }, counts.reduce((sum, [ingest]) => sum + (ingest[state] ?? 0), 0));
      deps.metrics.queueJobs.set({ queue: 'delivery', state }, counts.reduce((sum, [, delivery]) => sum + (delivery[state] ?? 0), 0));
    }
    sampledAt = deps.clock();
  };

  return {
    /** Drops the cached sample (Redis went away: what it said is no longer known). */
    forget(): void {
      sampledAt = Number.NEGATIVE_INFINITY;
    },
    async refresh(): Promise<void> {
      if (deps.clock() - sampledAt < maxAgeMs) return;
      sampling ??= sample().finally(() => (sampling = undefined));
      await sampling;
    },
  };
}
