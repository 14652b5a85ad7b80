import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import type { IngestJobData } from '../queues/queues.js';
import type { DeliveryBatcher } from '../routing/delivery-batcher.js';
import { routeImpressions } from '../routing/route-impressions.js';
import type { ConfigWatcher } from '../runtime/config-watcher.js';
import type { StatsStore } from '../stores/stats-store.js';

export interface RouteSummary {
  readonly routed: number;
  readonly dropped: number;
  readonly destinations: number;
}

/** BullMQ adapter of the routing stage: route, hand each destination its share, record traffic. */
export function createRouteProcessor(deps: { config: ConfigWatcher; batcher: DeliveryBatcher; stats: StatsStore; metrics: Metrics; logger: Logger }) {
  return async (job: Job<IngestJobData>): Promise<RouteSummary> => {
    const { environmentId, impressions } = job.data;
    const environment = deps.config.current().environments.get(environmentId);
    if (environment === undefined) {
      // The environment was deleted after the impressions were accepted.
      deps.metrics.impressionsDropped.inc({ reason: 'unknown_environment' }, impressions.length);
      deps.logger.warn({ environmentId, count: impressions.length }, 'impressions of a deleted environment dropped');
      return { routed: 0, dropped: impressions.length, destinations: 0 };
    }
    const result = routeImpressions(environment, impressions);
    await Promise.all([deps.batcher.addAll(result.byDestination), deps.stats.record(environmentId, result.traffic)]);
    let dropped = 0;
    for (const [reason, count] of result.dropped) {
      deps.metrics.impressionsDropped.inc({ reason }, count);
      dropped += count;
    }
    deps.metrics.impressionsRouted.inc(result.routed);
    return { routed: result.routed, dropped, destinations: result.byDestination.size };
  };
}
