import type { Queue } from 'bullmq';
import { AppError } from '../domain/errors.js';
import { type DeliveryJobData, promoteDelayed } from '../queues/queues.js';
import type { ConfigSnapshot } from '../runtime/config-snapshot.js';
import type { DestinationHealth, HealthStore } from '../stores/health-store.js';

export interface DestinationStatus extends DestinationHealth {
  readonly environmentId: string;
  readonly type: string;
  readonly enabled: boolean;
}

/** Where a destination's health is kept and its waiting work queued: its environment's partition. */
export interface DestinationPartition {
  readonly health: HealthStore;
  readonly queues: { readonly delivery: Queue<DeliveryJobData> };
}

/** Pause, resume and inspect destinations; shared by the admin API and the CLI. */
export function createDestinationHealthService(deps: { partitionFor: (environmentId: string) => DestinationPartition; config: () => ConfigSnapshot; clock: () => number }) {
  const requireDestination = (destinationId: string) => {
    const destination = deps.config().destinations.get(destinationId);
    if (destination === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`, { field: 'destinationId' });
    return destination;
  };
  const healthOf = (destinationId: string, environmentId: string) => deps.partitionFor(environmentId).health.get(destinationId);

  return {
    async status(destinationId: string): Promise<DestinationStatus> {
      const destination = requireDestination(destinationId);
      return { ...(await healthOf(destinationId, destination.environmentId)), environmentId: destination.environmentId, type: destination.destination.type, enabled: destination.destination.enabled };
    },

    async list(): Promise<DestinationStatus[]> {
      const destinations = [...deps.config().destinations.values()].sort((a, b) => a.destination.id.localeCompare(b.destination.id));
      return Promise.all(
        destinations.map(async (d) => ({ ...(await healthOf(d.destination.id, d.environmentId)), environmentId: d.environmentId, type: d.destination.type, enabled: d.destination.enabled })),
      );
    },

    async pause(destinationId: string, reason: string | undefined): Promise<DestinationStatus> {
      const { environmentId } = requireDestination(destinationId);
      await deps.partitionFor(environmentId).health.pause(destinationId, deps.clock(), `paused by an operator${reason ? `: ${reason}` : ''}`);
      return this.status(destinationId);
    },

    /** Resumes a paused or circuit-open destination and wakes the work that was waiting for it. */
    async resume(destinationId: string): Promise<DestinationStatus & { promoted: number }> {
      const partition = deps.partitionFor(requireDestination(destinationId).environmentId);
      await partition.health.resume(destinationId, deps.clock());
      const promoted = await promoteDelayed(partition.queues.delivery, destinationId);
      return { ...(await this.status(destinationId)), promoted };
    },
  };
}
export type DestinationHealthService = ReturnType<typeof createDestinationHealthService>;
