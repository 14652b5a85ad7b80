import { createMonitoringService, type FlagSeries, type MonitoringReport } from '../../admin/monitoring-service.js';
import { durationMs } from '../../runtime/app-context.js';
import { createMonitoringStore } from '../../stores/monitoring-store.js';
import { monitoringAcross } from '../../runtime/partitioned-stores.js';
import { openSession } from '../connect.js';
import { printJson, printTable } from '../output.js';

const bars = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const sparklineWidth = 60;

/** Buckets summed into at most `width` columns, each drawn relative to the row's largest. */
export function sparkline(values: readonly number[], width = sparklineWidth): string {
  const per = Math.max(1, Math.ceil(values.length / width));
  const columns: number[] = [];
  for (let start = 0; start < values.length; start += per) columns.push(values.slice(start, start + per).reduce((sum, n) => sum + n, 0));
  const max = Math.max(0, ...columns);
  return columns.map((n) => (n === 0 ? '·' : bars[Math.max(0, Math.ceil((n / max) * bars.length) - 1)])).join('');
}

function columnLabel(report: MonitoringReport): string {
  const per = Math.max(1, Math.ceil(report.timestamps.length / sparklineWidth));
  const seconds = report.stepSeconds * per;
  return seconds % 3600 === 0 ? `traffic (${seconds / 3600} h/column)` : `traffic (${seconds / 60} min/column)`;
}

function rows(flag: FlagSeries): Record<string, unknown>[] {
  if (flag.treatments.length === 0) return [{ flag: flag.flag, treatment: '(no tracked impressions)' }];
  const lines: Record<string, unknown>[] = flag.treatments.map((t, index) => ({
    flag: index === 0 ? flag.flag : '',
    treatment: t.treatment,
    impressions: t.total,
    uniqueKeys: t.uniqueKeys,
    traffic: sparkline(t.impressions),
  }));
  if (flag.treatments.length > 1) lines.push({ flag: '', treatment: '(all)', impressions: flag.total, uniqueKeys: flag.uniqueKeys, traffic: '' });
  return lines;
}

/** `flagstream monitor ENV [FLAG] [--since T] [--until T] [--step minute|hour] [--json]`. */
export async function monitorCommand(environmentId: string, flag: string | undefined, options: { since?: string; until?: string; step?: string; json?: boolean }): Promise<void> {
  const session = await openSession({ secrets: false, plugins: false });
  try {
    const { env, redis, configStore } = session;
    const retention = {
      minutesMs: durationMs(env.FLAGSTREAM_MONITOR_MINUTES_RETENTION, 'FLAGSTREAM_MONITOR_MINUTES_RETENTION'),
      hoursMs: durationMs(env.FLAGSTREAM_MONITOR_HOURS_RETENTION, 'FLAGSTREAM_MONITOR_HOURS_RETENTION'),
    };
    const store = monitoringAcross(session.partitioned((keys) => ({ monitoring: createMonitoringStore({ redis, keys, clock: Date.now, retention }) })));
    const monitoring = createMonitoringService({ store, environmentExists: async (id) => (await configStore.getEnvironment(id)) !== undefined, clock: Date.now });
    const report = await monitoring.series({ environmentId, flag, since: options.since, until: options.until, step: options.step });
    if (options.json) return printJson(report);
    const mtks = report.mtks.map((m) => `${m.month}: ${m.keys}`).join(', ');
    process.stdout.write(`${report.environmentId}: ${report.since} → ${report.until}, one ${report.step} per bucket; unique keys over ${report.days.length} UTC day(s); MTKs ${mtks}\n`);
    if (report.flags.length === 0) {
      process.stdout.write(flag === undefined ? 'no tracked impressions in this range\n' : `no tracked impressions of ${flag} in this range\n`);
      return;
    }
    const label = columnLabel(report);
    printTable(
      report.flags.flatMap(rows).map((row) => ({ ...row, [label]: row.traffic })),
      ['flag', 'treatment', 'impressions', 'uniqueKeys', label],
    );
    if (report.flagsOmitted > 0) process.stdout.write(`(${report.flagsOmitted} more flag(s) with traffic; name one to see it)\n`);
  } finally {
    await session.close();
  }
}
