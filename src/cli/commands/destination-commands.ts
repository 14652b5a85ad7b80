import { createDestinationHealthService, type DestinationStatus } from '../../admin/destination-health-service.js';
import { createHealthStore } from '../../stores/health-store.js';
import { openSession } from '../connect.js';
import { printJson, printTable } from '../output.js';

/** Health needs no secret: the configuration is read sealed, for destination ids and types. */
async function withService<T>(run: (service: ReturnType<typeof createDestinationHealthService>) => Promise<T>): Promise<T> {
  const session = await openSession({ secrets: false, plugins: false });
  try {
    const snapshot = await session.snapshot();
    const { partitionFor } = session.partitioned((keys, partition) => ({ health: createHealthStore({ redis: session.redis, keys }), queues: session.queues(partition) }));
    return await run(createDestinationHealthService({ partitionFor, config: () => snapshot, clock: Date.now }));
  } finally {
    await session.close();
  }
}

const time = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

function printStatuses(statuses: readonly DestinationStatus[]): void {
  printTable(
    statuses.map((s) => ({
      destination: s.destinationId,
      environment: s.environmentId,
      type: s.type,
      enabled: s.enabled,
      state: s.state,
      failures: s.consecutiveFailures,
      since: time(s.since),
      nextProbe: time(s.nextProbeAt),
      why: s.reason ?? '',
      lastError: s.lastError ?? '',
    })),
    ['destination', 'environment', 'type', 'enabled', 'state', 'failures', 'since', 'nextProbe', 'why', 'lastError'],
  );
}

export function destinationsStatus(id: string | undefined, options: { json?: boolean }): Promise<void> {
  return withService(async (service) => {
    const statuses = id === undefined ? await service.list() : [await service.status(id)];
    if (options.json) return printJson(id === undefined ? { destinations: statuses } : statuses[0]);
    printStatuses(statuses);
  });
}

export function destinationsPause(id: string, options: { reason?: string; json?: boolean }): Promise<void> {
  return withService(async (service) => {
    const status = await service.pause(id, options.reason);
    if (options.json) return printJson(status);
    process.stdout.write(`${id}: paused; its impressions wait until \`flagstream destinations resume ${id}\`\n`);
  });
}

export function destinationsResume(id: string, options: { json?: boolean }): Promise<void> {
  return withService(async (service) => {
    const status = await service.resume(id);
    if (options.json) return printJson(status);
    process.stdout.write(`${id}: resumed; ${status.promoted} waiting batch(es) released\n`);
  });
}
