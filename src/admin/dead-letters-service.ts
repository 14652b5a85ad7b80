import type { DeadLetter, DeadLetterStatus, DeadLetterSummary } from '../domain/dead-letter.js';
import { parseDuration } from '../domain/duration.js';
import { AppError } from '../domain/errors.js';
import { routingStage } from '../domain/dead-letter.js';
import { addJobsTo, execAll, queueTransaction, type Queues } from '../queues/queues.js';
import { closestName } from './unknown-keys.js';
import type { ConfigSnapshot } from '../runtime/config-snapshot.js';
import type { DeadLetterQuery, DeadLetterStore } from '../stores/dead-letter-store.js';

/** Which dead letters a replay or purge acts on: ids, or a query (destination, time, status), or all. */
export interface DeadLetterSelection extends Omit<DeadLetterQuery, 'limit'> {
  readonly ids?: readonly string[] | undefined;
  readonly all?: boolean | undefined;
}

export interface ReplayReport {
  readonly dryRun: boolean;
  /** Dead letters re-queued (or that would be). */
  readonly deadLetters: number;
  /** Impressions re-queued (or that would be). */
  readonly impressions: number;
  /** Selected but not re-queued, with why (already replayed, destination gone). */
  readonly skipped: readonly { readonly id: string; readonly reason: string }[];
}


/**
 * Listing, inspecting, replaying and purging dead letters; shared by the admin API and the CLI.
 * Replay re-queues the same impressions (same ids, so destinations that dedupe see no
 * duplicates) behind live traffic, and marks each dead letter replayed so a second run does nothing.
 */
export function createDeadLettersService(deps: { store: DeadLetterStore; queues: Pick<Queues, 'ingest' | 'delivery'>; config: () => ConfigSnapshot; clock: () => number }) {
  const { store } = deps;

  /**
   * A destination named in a query must exist: configured now, or with dead letters left from
   * before it was deleted. A typo is not found, never an empty success.
   */
  const requireKnownDestination = async (destinationId: string | undefined): Promise<void> => {
    // `@routing` names the dead letters of impressions that could not be routed: always a valid name.
    if (destinationId === undefined || destinationId === routingStage || deps.config().destinations.has(destinationId)) return;
    if ((await store.listIds({ destinationId, limit: 1 })).length > 0) return;
    const suggestion = closestName(destinationId, [...deps.config().destinations.keys()]);
    throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}" (none is configured, and none has dead letters)${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`, {
      field: 'destination',
    });
  };

  /** The ids a replay or purge acts on, checked to exist when named. */
  const selectIds = async (selection: DeadLetterSelection, defaultStatus?: DeadLetterStatus): Promise<string[]> => {
    if (selection.ids !== undefined && selection.ids.length > 0) {
      for (const id of selection.ids) if (!(await store.exists(id))) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no dead letter "${id}"`, { field: 'id' });
      return [...selection.ids];
    }
    if (!selection.all && selection.destinationId === undefined) {
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'say which dead letters: ids, a destination, or all', { field: 'destination' });
    }
    await requireKnownDestination(selection.destinationId);
    return store.listIds({ destinationId: selection.destinationId, since: selection.since, until: selection.until, status: selection.status ?? defaultStatus });
  };

  return {
    async list(query: DeadLetterQuery): Promise<DeadLetterSummary[]> {
      await requireKnownDestination(query.destinationId);
      return store.listSummaries(query);
    },

    async show(id: string): Promise<DeadLetter> {
      const letter = await store.get(id);
      if (letter === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no dead letter "${id}"`, { field: 'id' });
      return letter;
    },

    async replay(selection: DeadLetterSelection & { dryRun?: boolean }): Promise<ReplayReport> {
      const skipped: { id: string; reason: string }[] = [];
      let deadLetters = 0;
      let impressions = 0;
      const snapshot = deps.config();
      // One dead letter in memory at a time, however many an outage left.
      for (const id of await selectIds(selection, 'pending')) {
        const letter = await store.get(id);
        if (letter === undefined) continue;
        if (letter.status !== 'pending') {
          skipped.push({ id: letter.id, reason: 'already replayed' });
          continue;
        }
        const destination = letter.destinationId === routingStage ? undefined : snapshot.destinations.get(letter.destinationId);
        if (letter.destinationId !== routingStage && destination === undefined) {
          skipped.push({ id: letter.id, reason: `destination "${letter.destinationId}" no longer exists` });
          continue;
        }
        if (!selection.dryRun) {
          // Marking, counting and queueing happen in one transaction: a crash leaves either all
          // or none. The job id is derived from the dead letter, so a replay racing this one finds it.
          const jobId = `replay-${letter.id}`;
          const multi = await queueTransaction(deps.queues.delivery);
          store.markReplayedIn(multi, letter, deps.clock());
          if (destination === undefined) {
            await addJobsTo(multi, deps.queues.ingest, [{ name: 'impressions', data: { environmentId: letter.environmentId, impressions: letter.impressions }, opts: { jobId } }]);
          } else {
            await addJobsTo(multi, deps.queues.delivery, [
              {
                name: letter.destinationId,
                data: { destinationId: letter.destinationId, environmentId: letter.environmentId, items: letter.impressions, replayOf: letter.id },
                opts: { jobId, attempts: destination.destination.delivery.retrySchedule.length + 1, backoff: { type: 'destination' }, priority: 10 },
              },
            ]);
          }
          const [marked] = await execAll(multi);
          if (marked !== 1) {
            skipped.push({ id: letter.id, reason: 'already replayed' });
            continue;
          }
        }
        deadLetters += 1;
        impressions += letter.impressions.length;
      }
      return { dryRun: selection.dryRun === true, deadLetters, impressions, skipped };
    },

    async purge(selection: DeadLetterSelection & { dryRun?: boolean }): Promise<{ dryRun: boolean; purged: number }> {
      const ids = await selectIds(selection);
      if (selection.dryRun) return { dryRun: true, purged: ids.length };
      return { dryRun: false, purged: await store.remove(ids) };
    },
  };
}
export type DeadLettersService = ReturnType<typeof createDeadLettersService>;

/** `--since`/`--until`: an ISO date, epoch ms, or a duration back from now (`2h`, `1h30m`, `7d`). */
export function parseTimeBound(text: string | undefined, now: number, field: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  const relative = /^\d/.test(text) && !/^\d+$/.test(text) ? parseDuration(text) : undefined;
  if (relative !== undefined) return now - relative;
  if (/^\d{10,}$/.test(text)) return Number(text);
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) throw new AppError('FLAGSTREAM_ERR_VALIDATION', `${field}: expected an ISO date (2026-11-24T10:00:00Z), epoch ms, or a duration back from now (2h, 7d); got "${text}"`, { field });
  return parsed;
}
