import { createLedgerService, type LedgerReport } from '../../src/admin/ledger-service.js';
import type { TestApp } from './test-app.js';

export function readLedger(app: TestApp): Promise<LedgerReport> {
  const { ctx } = app;
  return createLedgerService({ redis: ctx.redis, keys: ctx.keys, ledger: ctx.ledger, queues: ctx.queues }).report();
}

/** Waits until nothing is pending anywhere and the ledger balances: a quiet moment. */
export async function waitForQuietLedger(app: TestApp, timeoutMs = 20_000): Promise<LedgerReport> {
  let last: LedgerReport | undefined;
  await app.waitForState(
    async () => {
      last = await readLedger(app);
      return last.environments.every((e) => e.pending === 0 && e.destinations.every((d) => d.pending === 0)) && last.balanced;
    },
    timeoutMs,
    'a quiet, balanced ledger',
  );
  return last as LedgerReport;
}
