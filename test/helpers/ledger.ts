import { createLedgerService, type LedgerReport } from '../../src/admin/ledger-service.js';
import type { TestApp } from './test-app.js';

export function readLedger(app: TestApp): Promise<LedgerReport> {
  const { ctx } = app;
  return createLedgerService({ partitions: ctx.partitions }).report();
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

// Over HTTP, for the fault suite's separate processes: `GET /admin/v1/ledger` and dead letters.

async function adminGet(url: string, token: string, path: string): Promise<unknown> {
  const response = await fetch(`${url}/admin/v1${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /admin/v1${path} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

/** The ledger as a running flagstream answers it (`GET /admin/v1/ledger`). */
export async function fetchLedger(url: string, token: string): Promise<LedgerReport> {
  return (await adminGet(url, token, '/ledger')) as LedgerReport;
}

/** One line: `balanced` or what does not balance. */
export function describeLedger(ledger: LedgerReport | undefined, environmentId: string): string {
  if (ledger === undefined) return 'unreadable';
  const environment = ledger.environments.find((e) => e.environmentId === environmentId);
  if (environment === undefined) return `${ledger.balanced ? 'balanced' : 'UNBALANCED'} (no ${environmentId})`;
  const dropped = Object.entries(environment.dropped)
    .map(([reason, n]) => `${reason}:${n}`)
    .join(',');
  const destinations = environment.destinations
    .map((d) => `${d.destinationId}[routed ${d.routed} replayed ${d.replayed} delivered ${d.delivered} skipped ${d.skipped} dead ${d.deadLettered} pending ${d.pending} diff ${d.difference}]`)
    .join(' ');
  return `${ledger.balanced ? 'balanced' : 'UNBALANCED'} received ${environment.received} dropped {${dropped}} routed ${environment.routed} dead ${environment.deadLettered} pending ${environment.pending} diff ${environment.difference} ${destinations}`;
}

interface DeadLetterSummary {
  readonly id: string;
  readonly reason: string;
  readonly impressionCount: number;
}

/** Keys of the impressions dead-lettered for `destinationId` (pending and replayed alike), and how many per reason. */
export async function deadLetteredKeys(url: string, token: string, destinationId: string): Promise<{ keys: Set<string>; reasons: Map<string, number> }> {
  const list = (await adminGet(url, token, `/dead-letters?destination=${encodeURIComponent(destinationId)}&limit=10000`)) as { deadLetters: DeadLetterSummary[] };
  const keys = new Set<string>();
  const reasons = new Map<string, number>();
  for (const summary of list.deadLetters) {
    reasons.set(summary.reason, (reasons.get(summary.reason) ?? 0) + summary.impressionCount);
    const letter = (await adminGet(url, token, `/dead-letters/${encodeURIComponent(summary.id)}`)) as { impressions: { key: string }[] };
    for (const impression of letter.impressions) keys.add(impression.key);
  }
  return { keys, reasons };
}
