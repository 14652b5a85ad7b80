import { createDeadLettersService, parseTimeBound } from '../../admin/dead-letters-service.js';
import { DeadLetterSchema } from '../../domain/dead-letter.js';
import { AppError } from '../../domain/errors.js';
import { durationMs } from '../../runtime/app-context.js';
import { createDeadLetterStore } from '../../stores/dead-letter-store.js';
import { openSession } from '../connect.js';
import { confirm, printJson, printTable } from '../output.js';

interface SelectionOptions {
  destination?: string;
  since?: string;
  until?: string;
  status?: string;
  all?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** Dead letters need no secret: the configuration is read sealed, for destination ids and retry schedules. */
async function withService<T>(run: (service: ReturnType<typeof createDeadLettersService>, now: number) => Promise<T>): Promise<T> {
  const session = await openSession({ secrets: false, plugins: false });
  try {
    const snapshot = await session.snapshot();
    const retentionMs = durationMs(session.env.FLAGSTREAM_DEAD_LETTER_RETENTION, 'FLAGSTREAM_DEAD_LETTER_RETENTION');
    const { partitions } = session.partitioned((keys, partition) => ({ deadLetters: createDeadLetterStore({ redis: session.redis, keys, retentionMs }), queues: session.queues(partition) }));
    const service = createDeadLettersService({ partitions, config: () => snapshot, clock: Date.now });
    return await run(service, Date.now());
  } finally {
    await session.close();
  }
}

function status(value: string | undefined) {
  if (value === undefined) return undefined;
  const parsed = DeadLetterSchema.shape.status.safeParse(value);
  if (!parsed.success) throw new AppError('FLAGSTREAM_ERR_VALIDATION', '--status: expected pending or replayed', { field: 'status' });
  return parsed.data;
}

const time = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

export function dlqList(options: SelectionOptions & { limit?: number }): Promise<void> {
  return withService(async (service, now) => {
    const letters = await service.list({
      destinationId: options.destination,
      since: parseTimeBound(options.since, now, 'since'),
      until: parseTimeBound(options.until, now, 'until'),
      status: status(options.status),
      limit: options.limit,
    });
    if (options.json) return printJson({ deadLetters: letters });
    if (letters.length === 0) {
      process.stdout.write('no dead letters\n');
      return;
    }
    printTable(
      letters.map((l) => ({
        id: l.id,
        destination: l.destinationId,
        reason: l.reason,
        impressions: l.impressionCount,
        attempts: l.attempts,
        created: time(l.createdAt),
        status: l.status,
        error: l.error.message.length > 60 ? `${l.error.message.slice(0, 59)}…` : l.error.message,
      })),
      ['id', 'destination', 'reason', 'impressions', 'attempts', 'created', 'status', 'error'],
    );
  });
}

export function dlqShow(id: string, options: { json?: boolean }): Promise<void> {
  return withService(async (service) => {
    const letter = await service.show(id);
    if (options.json) return printJson(letter);
    const lines = [
      `id:            ${letter.id}`,
      `destination:   ${letter.destinationId} (${letter.connectorType}, environment ${letter.environmentId})`,
      `reason:        ${letter.reason}`,
      `error:         ${letter.error.message}`,
      `attempts:      ${letter.attempts} (first ${time(letter.firstAttemptAt)}, last ${time(letter.lastAttemptAt)})`,
      `status:        ${letter.status}${letter.replayedAt === undefined ? '' : ` at ${time(letter.replayedAt)}`}`,
      `impressions:   ${letter.impressions.length}`,
      ...letter.impressions.map((i) => `  ${JSON.stringify(i)}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

function selection(ids: readonly string[], options: SelectionOptions, now: number) {
  const chosen = [ids.length > 0, options.destination !== undefined, options.all === true].filter(Boolean).length;
  if (chosen !== 1) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'name the dead letters: IDs, or --destination D [--since T], or --all (exactly one of them)');
  return {
    ids,
    destinationId: options.destination,
    since: parseTimeBound(options.since, now, 'since'),
    until: parseTimeBound(options.until, now, 'until'),
    status: status(options.status),
    all: options.all === true,
    dryRun: options.dryRun === true,
  };
}

export function dlqReplay(ids: string[], options: SelectionOptions): Promise<void> {
  return withService(async (service, now) => {
    const report = await service.replay(selection(ids, options, now));
    if (options.json) return printJson(report);
    const verb = report.dryRun ? 'would re-queue' : 're-queued';
    process.stdout.write(`${verb} ${report.impressions} impression(s) from ${report.deadLetters} dead letter(s)\n`);
    for (const skipped of report.skipped) process.stdout.write(`skipped ${skipped.id}: ${skipped.reason}\n`);
  });
}

export function dlqPurge(ids: string[], options: SelectionOptions & { yes?: boolean }): Promise<void> {
  return withService(async (service, now) => {
    const chosen = selection(ids, options, now);
    if (!chosen.dryRun) {
      const { purged } = await service.purge({ ...chosen, dryRun: true });
      if (purged > 0) await confirm(`dlq purge deletes ${purged} dead letter(s) for good`, { yes: options.yes });
    }
    const report = await service.purge(chosen);
    if (options.json) return printJson(report);
    process.stdout.write(`${report.dryRun ? 'would purge' : 'purged'} ${report.purged} dead letter(s)\n`);
  });
}
