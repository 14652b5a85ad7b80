import { createLedgerService } from '../../admin/ledger-service.js';
import { durationMs } from '../../runtime/app-context.js';
import { createLedgerStore } from '../../stores/ledger-store.js';
import { openSession } from '../connect.js';
import { printJson, printTable } from '../output.js';

/** `flagstream ledger [--environment ID] [--json]`: where every accepted impression went. */
export async function ledgerCommand(options: { json?: boolean; environment?: string }): Promise<void> {
  // Counts and queues only: no secret, no plugin.
  const session = await openSession({ secrets: false, plugins: false });
  try {
    const { env, redis } = session;
    const markerTtlMs = durationMs(env.FLAGSTREAM_MAX_DELIVERY_AGE, 'FLAGSTREAM_MAX_DELIVERY_AGE');
    const { partitions } = session.partitioned((keys, partition) => ({ redis, dataKeys: keys, ledger: createLedgerStore({ redis, keys, markerTtlMs }), queues: session.queues(partition) }));
    const report = await createLedgerService({ partitions }).report({ environmentId: options.environment });
    if (options.json) return printJson(report);
    const rows: Record<string, unknown>[] = [];
    for (const environment of report.environments) {
      const dropped = Object.entries(environment.dropped).map(([reason, n]) => `${reason}=${n}`).join(' ');
      rows.push({
        where: environment.environmentId,
        in: `received ${environment.received}${environment.replayed > 0 ? ` + replayed ${environment.replayed}` : ''}`,
        out: `routed ${environment.routed}, dropped ${dropped || 0}, dead-lettered ${environment.deadLettered}, pending ${environment.pending}`,
        difference: environment.difference,
      });
      for (const d of environment.destinations) {
        rows.push({
          where: `  → ${d.destinationId}`,
          in: `routed ${d.routed}${d.replayed > 0 ? ` + replayed ${d.replayed}` : ''}`,
          out: `delivered ${d.delivered}, skipped ${d.skipped}, dead-lettered ${d.deadLettered}, pending ${d.pending}`,
          difference: d.difference,
        });
      }
    }
    printTable(rows, ['where', 'in', 'out', 'difference']);
    console.log(report.balanced ? 'balanced' : 'NOT balanced: a difference other than 0 while nothing is pending means impressions were lost or duplicated');
  } finally {
    await session.close();
  }
}
