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


/** The dead letters of one partition of the data plane, and the queues a replay of them goes to. */
export interface DeadLetterPartition {
  readonly deadLetters: DeadLetterStore;
  readonly queues: Pick<Queues, 'ingest' | 'delivery'>;
}

/** A dead letter's id and the partition that holds it. */
interface Located {
  readonly id: string;
  readonly partition: DeadLetterPartition;
}

/**
 * Listing, inspecting, replaying and purging dead letters; shared by the admin API and the CLI.
 * Replay re-queues the same impressions (same ids, so destinations that dedupe see no
 * duplicates) behind live traffic, and marks each dead letter replayed so a second run does nothing.
 *
 * A partitioned deployment keeps each dead letter in its environment's partition: lists merge
 * the partitions' indexes by time, an id is looked up in each partition (ids are content hashes
 * and name no partition), and a replay or purge acts in the dead letter's own partition, with
 * that partition's queues, so each transaction stays on one slot.
 */
export function createDeadLettersService(deps: { partitions: readonly DeadLetterPartition[]; config: () => ConfigSnapshot; clock: () => number }) {
  const { partitions } = deps;

  const locate = async (id: string): Promise<DeadLetterPartition | undefined> => {
    for (const partition of partitions) if (await partition.deadLetters.exists(id)) return partition;
    return undefined;
  };

  /**
   * A destination named in a query must exist: configured now, or with dead letters left from
   * before it was deleted. A typo is not found, never an empty success.
   */
  const requireKnownDestination = async (destinationId: string | undefined): Promise<void> => {
    // `@routing` names the dead letters of impressions that could not be routed: always a valid name.
    if (destinationId === undefined || destinationId === routingStage || deps.config().destinations.has(destinationId)) return;
    for (const partition of partitions) if ((await partition.deadLetters.listIds({ destinationId, limit: 1 })).length > 0) return;
    const suggestion = closestName(destinationId, [...deps.config().destinations.keys()]);
    throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}" (none is configured, and none has dead letters)${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`, {
      field: 'destination',
    });
  };

  /** The dead letters a replay or purge acts on, with their partitions; checked to exist when named. */
  const select = async (selection: DeadLetterSelection, defaultStatus?: DeadLetterStatus): Promise<Located[]> => {
    if (selection.ids !== undefined && selection.ids.length > 0) {
      const located: Located[] = [];
      for (const id of selection.ids) {
        const partition = await locate(id);
        if (partition === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no dead letter "${id}"`, { field: 'id' });
        located.push({ id, partition });
      }
      return located;
    }
    if (!selection.all && selection.destinationId === undefined) {
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'say which dead letters: ids, a destination, or all', { field: 'destination' });
    }
    await requireKnownDestination(selection.destinationId);
    const query = { destinationId: selection.destinationId, since: selection.since, until: selection.until, status: selection.status ?? defaultStatus };
    const perPartition = await Promise.all(partitions.map(async (partition) => (await partition.deadLetters.listIds(query)).map((id) => ({ id, partition }))));
    return perPartition.flat();
  };

  return {
    async list(query: DeadLetterQuery): Promise<DeadLetterSummary[]> {
      await requireKnownDestination(query.destinationId);
      // Each partition's newest `limit`, merged newest first: the newest `limit` overall.
      const perPartition = await Promise.all(partitions.map((partition) => partition.deadLetters.listSummaries(query)));
      if (perPartition.length === 1) return perPartition[0] ?? [];
      const merged = perPartition.flat().sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
      return query.limit === undefined ? merged : merged.slice(0, query.limit);
    },

    async show(id: string): Promise<DeadLetter> {
      const letter = await (await locate(id))?.deadLetters.get(id);
      if (letter === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no dead letter "${id}"`, { field: 'id' });
      return letter;
    },

    async replay(selection: DeadLetterSelection & { dryRun?: boolean }): Promise<ReplayReport> {
      const skipped: { id: string; reason: string }[] = [];
      let deadLetters = 0;
      let impressions = 0;
      const snapshot = deps.config();
      // One dead letter in memory at a time, however many an outage left.
      for (const { id, partition } of await select(selection, 'pending')) {
        const store = partition.deadLetters;
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
          const multi = await queueTransaction(partition.queues.delivery);
          store.markReplayedIn(multi, letter, deps.clock());
          if (destination === undefined) {
            await addJobsTo(multi, partition.queues.ingest, [{ name: 'impressions', data: { environmentId: letter.environmentId, impressions: letter.impressions }, opts: { jobId } }]);
          } else {
            await addJobsTo(multi, partition.queues.delivery, [
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
      const located = await select(selection);
      if (selection.dryRun) return { dryRun: true, purged: located.length };
      let purged = 0;
      for (const partition of partitions) {
        const ids = located.filter((letter) => letter.partition === partition).map((letter) => letter.id);
        if (ids.length > 0) purged += await partition.deadLetters.remove(ids);
      }
      return { dryRun: false, purged };
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
