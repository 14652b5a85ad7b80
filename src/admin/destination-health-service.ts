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

/** Pause, resume and inspect destinations; shared by the admin API and the CLI. */
export function createDestinationHealthService(deps: { health: HealthStore; deliveryQueue: Queue<DeliveryJobData>; config: () => ConfigSnapshot; clock: () => number }) {
  const requireDestination = (destinationId: string) => {
    const destination = deps.config().destinations.get(destinationId);
    if (destination === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`, { field: 'destinationId' });
    return destination;
  };

  return {
    async status(destinationId: string): Promise<DestinationStatus> {
      const destination = requireDestination(destinationId);
      return { ...(await deps.health.get(destinationId)), environmentId: destination.environmentId, type: destination.destination.type, enabled: destination.destination.enabled };
    },

    async list(): Promise<DestinationStatus[]> {
      const destinations = [...deps.config().destinations.values()].sort((a, b) => a.destination.id.localeCompare(b.destination.id));
      return Promise.all(
        destinations.map(async (d) => ({ ...(await deps.health.get(d.destination.id)), environmentId: d.environmentId, type: d.destination.type, enabled: d.destination.enabled })),
      );
    },

    async pause(destinationId: string, reason: string | undefined): Promise<DestinationStatus> {
      requireDestination(destinationId);
      await deps.health.pause(destinationId, deps.clock(), `paused by an operator${reason ? `: ${reason}` : ''}`);
      return this.status(destinationId);
    },

    /** Resumes a paused or circuit-open destination and wakes the work that was waiting for it. */
    async resume(destinationId: string): Promise<DestinationStatus & { promoted: number }> {
      requireDestination(destinationId);
      await deps.health.resume(destinationId, deps.clock());
      const promoted = await promoteDelayed(deps.deliveryQueue, destinationId);
      return { ...(await this.status(destinationId)), promoted };
    },
  };
}
export type DestinationHealthService = ReturnType<typeof createDestinationHealthService>;
