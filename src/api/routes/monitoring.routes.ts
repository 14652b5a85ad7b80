import type { FastifyInstance } from 'fastify';
import type { MonitoringService } from '../../admin/monitoring-service.js';
import { AppError } from '../../domain/errors.js';
import type { TailFilter } from '../../routing/live-tail.js';
import type { TailSubscriptions } from '../../stores/live-tail-store.js';
import { type LiveTailLimits, type LiveTailStream, streamLiveTail } from '../live-tail-stream.js';

export interface MonitoringRouteDeps {
  readonly monitoring: MonitoringService;
  readonly subscriptions: TailSubscriptions;
  readonly environmentExists: (environmentId: string) => Promise<boolean>;
  readonly liveTail: LiveTailLimits;
}

type Query = Record<string, string | undefined>;

const text = (value: string | undefined) => (value === undefined || value === '' ? undefined : value);

/**
 * What flows, under /admin/v1 (registered inside the admin scope, so behind its authentication):
 * monitoring series, monthly tracked keys, and the live tail as server-sent events.
 */
export function registerMonitoringRoutes(admin: FastifyInstance, deps: MonitoringRouteDeps): void {
  const streams = new Set<LiveTailStream>();

  admin.get('/environments/:environmentId/monitoring', async (request) => {
    const { environmentId = '' } = request.params as Query;
    const query = request.query as Query;
    return deps.monitoring.series({ environmentId, flag: text(query.flag), since: text(query.since), until: text(query.until), step: text(query.step), limit: text(query.limit) });
  });

  admin.get('/environments/:environmentId/mtks', async (request) => {
    const { environmentId = '' } = request.params as Query;
    return deps.monitoring.mtks(environmentId, text((request.query as Query).months));
  });

  admin.get('/environments/:environmentId/tail', async (request, reply) => {
    const { environmentId = '' } = request.params as Query;
    if (!(await deps.environmentExists(environmentId))) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${environmentId}"`, { field: 'environmentId' });
    const query = request.query as Query;
    const filter: TailFilter = { flag: text(query.flag), treatment: text(query.treatment), key: text(query.key) };
    // The stream is written by hand from here on: fastify no longer answers this request.
    reply.hijack();
    const stream = streamLiveTail({
      subscriptions: deps.subscriptions,
      environmentId,
      filter: Object.fromEntries(Object.entries(filter).filter(([, value]) => value !== undefined)) as TailFilter,
      response: reply.raw,
      headers: { 'x-request-id': request.id },
      limits: deps.liveTail,
      onEnd: (ended) => streams.delete(ended),
    });
    streams.add(stream);
    await stream.started;
  });

  // Open streams would keep the server from closing: each gets a final event first.
  admin.addHook('preClose', async () => {
    for (const stream of [...streams]) stream.end('shutdown', 'the server is shutting down; reconnect to continue');
  });
}
