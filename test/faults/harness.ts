// The fault suite's shared setup and final check. Each scenario file starts its own redis-server,
// its receivers and its flagstream processes, breaks something, and ends with `settle()`: every
// accepted impression arrived at every receiver (or is dead-lettered), nothing refused arrived,
// no BullMQ job sits in a failed set, and the ledger balances with the exact expected numbers.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CountingReceiver } from '../helpers/counting-receiver.js';
import { ImpressionLoad, type LoadOptions, type SentRequest } from '../helpers/impression-load.js';
import type { LedgerReport } from '../../src/admin/ledger-service.js';
import { routingStage } from '../../src/domain/dead-letter.js';
import { deadLetteredKeys, describeLedger, fetchLedger } from '../helpers/ledger.js';
import { applyConfig, type FlagstreamEnv, FlagstreamProcess, PrivateRedis, pollUntil, type Role, scratchDir } from '../helpers/processes.js';

export const environmentId = 'env-faults';
export const sdkKey = 'sdk-faults';
export const adminToken = 'faults-admin-token';
export const trackedFlag = 'fault_flag';
export const droppedFlag = 'quiet_flag';
/** Every key of the fault suite's Redis starts with this. */
export const redisPrefix = 'faults';
/** The drop reason routing records for a flag whose tracking is off. */
export const trackingOffReason = 'tracking_off';

/**
 * Retries compressed so that a minute-long outage fits in tens of seconds: 24 retries about a
 * second apart (each attempt also makes two quick in-process retries), a breaker that probes
 * again after a second.
 */
export const compressedDelivery = {
  retrySchedule: Array.from({ length: 24 }, () => '1s'),
  timeout: '1500ms',
  circuitBreakerThreshold: 10,
  circuitBreakerCooldown: '1s',
};

export interface FaultDestination {
  readonly id: string;
  readonly delivery?: Record<string, unknown>;
  readonly settings?: Record<string, unknown>;
}

export interface Fault {
  readonly name: string;
  readonly dir: string;
  readonly redis: PrivateRedis;
  readonly env: FlagstreamEnv;
  readonly receivers: ReadonlyMap<string, CountingReceiver>;
  receiver(id: string): CountingReceiver;
  /** Starts a `flagstream serve` process (tracked: teardown kills whatever is left). */
  start(name: string, role: Role, options?: { env?: Record<string, string>; port?: number }): Promise<FlagstreamProcess>;
  /** URLs of the live processes that serve the API. */
  apiUrls(): string[];
  load(tag: string, options?: Partial<LoadOptions>): ImpressionLoad;
  /** Waits for everything to settle, prints the summary line, and throws listing every broken promise. */
  settle(options?: SettleOptions): Promise<Settlement>;
  teardown(): Promise<void>;
}

export interface SettleOptions {
  /** How long accepted impressions may take to arrive. */
  readonly timeoutMs?: number;
  /** Most acknowledged arrivals of one impression at one receiver. */
  readonly maxArrivals?: number;
  /** Dead letters are expected (else any is a failure). */
  readonly allowDeadLetters?: boolean;
}

export interface Settlement {
  readonly acceptedImpressions: number;
  readonly ledger: LedgerReport | undefined;
  readonly problems: readonly string[];
}

export async function setUpFault(name: string, options: { destinations: readonly FaultDestination[]; processEnv?: Record<string, string> }): Promise<Fault> {
  const scratch = scratchDir(name);
  const redis = await PrivateRedis.start(join(scratch.path, 'redis'));
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const receivers = new Map<string, CountingReceiver>();
  for (const destination of options.destinations) receivers.set(destination.id, await CountingReceiver.start(destination.id, secret));
  const env: FlagstreamEnv = {
    REDIS_URL: redis.url,
    ADMIN_TOKEN: adminToken,
    FLAGSTREAM_REDIS_PREFIX: redisPrefix,
    FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
    // A killed worker's job is taken over after about a second.
    FLAGSTREAM_JOB_LOCK_MS: '1000',
    FLAGSTREAM_BATCH_WAIT_CAP_MS: '100',
    ...options.processEnv,
  };
  await applyConfig(
    {
      environments: [
        {
          id: environmentId,
          name: 'Faults',
          sdkKeys: [sdkKey],
          flags: [
            { name: trackedFlag, trafficType: 'user', trackImpressions: true },
            { name: droppedFlag, trafficType: 'user', trackImpressions: false },
          ],
          destinations: options.destinations.map((d) => ({
            id: d.id,
            type: 'webhook',
            settings: { url: receivers.get(d.id)?.url, secret, timeout: 1500, batchSize: 100, maxBatchWait: 100, ...d.settings },
            delivery: { ...compressedDelivery, ...d.delivery },
          })),
        },
      ],
    },
    env,
    scratch.path,
  );

  const processes: FlagstreamProcess[] = [];
  const loads: ImpressionLoad[] = [];
  const fault: Fault = {
    name,
    dir: scratch.path,
    redis,
    env,
    receivers,
    receiver(id) {
      const receiver = receivers.get(id);
      if (receiver === undefined) throw new Error(`no receiver ${id}`);
      return receiver;
    },
    async start(processName, role, startOptions = {}) {
      const started = await FlagstreamProcess.start({ name: processName, role, env: { ...env, ...startOptions.env }, dir: scratch.path, ...(startOptions.port === undefined ? {} : { port: startOptions.port }) });
      processes.push(started);
      return started;
    },
    apiUrls() {
      return processes.filter((p) => p.alive && p.role !== 'worker').map((p) => p.url);
    },
    load(tag, loadOptions = {}) {
      const load = new ImpressionLoad({ targets: () => fault.apiUrls(), sdkKey, tag: `${name}-${tag}`, trackedFlag, droppedFlag, tracked: 45, dropped: 5, ...loadOptions });
      loads.push(load);
      return load;
    },
    settle: (settleOptions = {}) => settle(fault, loads, processes, settleOptions),
    async teardown() {
      for (const load of loads) await load.stop().catch(() => undefined);
      for (const running of processes) await running.kill();
      for (const receiver of receivers.values()) await receiver.close();
      await redis.stop();
      scratch.remove();
    },
  };
  return fault;
}

/** BullMQ's keys of one queue state (lists or sorted sets). */
async function queueSize(redis: PrivateRedis, queue: 'ingest' | 'delivery', state: 'wait' | 'active' | 'delayed' | 'prioritized' | 'failed' | 'paused'): Promise<number> {
  const key = `${redisPrefix}:q:${queue}:${state}`;
  const type = await redis.client.type(key);
  if (type === 'list') return redis.client.llen(key);
  if (type === 'zset') return redis.client.zcard(key);
  return 0;
}

/** Jobs not finished yet in both queues (waiting, running, delayed). */
export async function unfinishedJobs(redis: PrivateRedis): Promise<number> {
  let total = 0;
  for (const queue of ['ingest', 'delivery'] as const) {
    for (const state of ['wait', 'active', 'delayed', 'prioritized', 'paused'] as const) total += await queueSize(redis, queue, state);
  }
  return total;
}

export async function failedJobs(redis: PrivateRedis): Promise<{ ingest: number; delivery: number }> {
  return { ingest: await queueSize(redis, 'ingest', 'failed'), delivery: await queueSize(redis, 'delivery', 'failed') };
}

const isAccepted = (r: SentRequest) => typeof r.status === 'number' && r.status >= 200 && r.status < 300;

async function settle(fault: Fault, loads: readonly ImpressionLoad[], processes: readonly FlagstreamProcess[], options: SettleOptions): Promise<Settlement> {
  const problems: string[] = [];
  const sent = loads.flatMap((load) => load.sent);
  const accepted = sent.filter(isAccepted);
  const unanswered = sent.filter((r) => r.status === 'error');
  const refused = sent.filter((r) => !isAccepted(r) && r.status !== 'error');
  const mustArrive = accepted.flatMap((r) => r.trackedKeys);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const apiUrl = () => {
    const url = fault.apiUrls()[0];
    if (url === undefined) throw new Error('settle() needs a live API process (the ledger and dead letters are read from it)');
    return url;
  };

  // 1. Every accepted impression arrives at every receiver, or is dead-lettered for it.
  const deadLettered = new Map<string, Set<string>>();
  const deadReasons = new Map<string, Map<string, number>>();
  const readDeadLetters = async () => {
    for (const id of [...fault.receivers.keys(), routingStage]) {
      const { keys, reasons } = await deadLetteredKeys(apiUrl(), adminToken, id);
      deadLettered.set(id, keys);
      deadReasons.set(id, reasons);
    }
  };
  // Dead letters of routing stand for every destination: replaying them routes them again.
  const isDeadFor = (id: string, key: string) => (deadLettered.get(id)?.has(key) ?? false) || (deadLettered.get(routingStage)?.has(key) ?? false);
  const missingAt = (id: string) => {
    const receiver = fault.receiver(id);
    return mustArrive.filter((key) => !receiver.idOfKey.has(key) && !isDeadFor(id, key));
  };
  let lastDeadLetterRead = 0;
  await pollUntil(
    async () => {
      if ([...fault.receivers.keys()].every((id) => missingAt(id).length === 0)) return true;
      if (Date.now() - lastDeadLetterRead > 2000) {
        lastDeadLetterRead = Date.now();
        await readDeadLetters().catch(() => undefined);
      }
      return false;
    },
    { timeoutMs, what: 'every accepted impression to arrive', everyMs: 200 },
  ).catch((error: unknown) => problems.push(error instanceof Error ? error.message : String(error)));

  // 2. A quiet moment: nothing waiting, running or delayed in either queue.
  await pollUntil(async () => (await unfinishedJobs(fault.redis)) === 0, { timeoutMs: 30_000, what: 'both queues to be empty' }).catch(async (error: unknown) =>
    problems.push(`${error instanceof Error ? error.message : String(error)} (${await unfinishedJobs(fault.redis).catch(() => '?')} unfinished)`),
  );
  await readDeadLetters().catch((error: unknown) => problems.push(`dead letters unreadable: ${String(error)}`));

  // 3. What arrived, request by request.
  const arrivedAnywhere = (key: string) => [...fault.receivers.keys()].some((id) => fault.receiver(id).idOfKey.has(key) || isDeadFor(id, key));
  const unansweredArrived = unanswered.filter((r) => r.trackedKeys.some(arrivedAnywhere));
  const enqueued = [...accepted, ...unansweredArrived];
  // What the ledger must say: a request dead-lettered by routing is neither routed nor dropped.
  const routingDead = deadLettered.get(routingStage) ?? new Set<string>();
  const unrouted = enqueued.filter((r) => r.trackedKeys.some((key) => routingDead.has(key)));
  const routedRequests = enqueued.filter((r) => !unrouted.includes(r));
  const expected = {
    received: enqueued.reduce((sum, r) => sum + r.trackedKeys.length + r.droppedKeys.length, 0),
    dropped: routedRequests.reduce((sum, r) => sum + r.droppedKeys.length, 0),
    routed: routedRequests.reduce((sum, r) => sum + r.trackedKeys.length, 0),
    routingDeadLettered: unrouted.reduce((sum, r) => sum + r.trackedKeys.length + r.droppedKeys.length, 0),
    deadLettered,
  };
  const sentKeys = new Set(sent.flatMap((r) => r.trackedKeys));
  const droppedKeys = new Set(sent.flatMap((r) => r.droppedKeys));
  const refusedKeys = new Set(refused.flatMap((r) => r.trackedKeys));

  for (const [id, receiver] of fault.receivers) {
    const missing = missingAt(id);
    if (missing.length > 0) problems.push(`${id}: ${missing.length} accepted impression(s) neither delivered nor dead-lettered (e.g. ${missing.slice(0, 3).join(', ')})`);
    const arrivedKeys = [...receiver.idOfKey.keys()];
    const refusedArrived = arrivedKeys.filter((key) => refusedKeys.has(key));
    if (refusedArrived.length > 0) problems.push(`${id}: ${refusedArrived.length} impression(s) of refused requests arrived (e.g. ${refusedArrived[0]})`);
    const strangers = arrivedKeys.filter((key) => !sentKeys.has(key));
    const droppedArrived = strangers.filter((key) => droppedKeys.has(key));
    if (droppedArrived.length > 0) problems.push(`${id}: ${droppedArrived.length} impression(s) of a flag with tracking off arrived`);
    if (strangers.length > droppedArrived.length) problems.push(`${id}: ${strangers.length - droppedArrived.length} impression(s) arrived that were never sent`);
    for (const request of unanswered) {
      const arrived = request.trackedKeys.filter((key) => receiver.idOfKey.has(key) || isDeadFor(id, key)).length;
      if (arrived !== 0 && arrived !== request.trackedKeys.length) problems.push(`${id}: unanswered request #${request.index} arrived in part (${arrived}/${request.trackedKeys.length}): a request is accepted whole or not at all`);
    }
    if (receiver.idConflicts.length > 0) problems.push(`${id}: ${receiver.idConflicts.length} impression(s) arrived with two different ids (e.g. key ${receiver.idConflicts[0]})`);
    if (receiver.invalidSignatures > 0) problems.push(`${id}: ${receiver.invalidSignatures} request(s) with an invalid signature`);
    const maxArrivals = options.maxArrivals ?? 3;
    if (receiver.maxArrivals > maxArrivals) problems.push(`${id}: an impression arrived ${receiver.maxArrivals} times (at most ${maxArrivals} allowed)`);
  }
  if (options.allowDeadLetters !== true) {
    for (const [id, keys] of deadLettered) {
      if (keys.size > 0) problems.push(`${id}: ${keys.size} impression(s) dead-lettered (${[...(deadReasons.get(id) ?? [])].map(([r, n]) => `${r}:${n}`).join(', ')})`);
    }
  }

  // 4. Nothing left in BullMQ's failed sets, where no one looks.
  const failed = await failedJobs(fault.redis);
  if (failed.ingest + failed.delivery > 0) problems.push(`BullMQ failed sets hold jobs: ingest ${failed.ingest}, delivery ${failed.delivery} (lost: neither delivered nor dead-lettered)`);

  // 5. The ledger balances, with the exact numbers.
  let ledger: LedgerReport | undefined;
  await pollUntil(
    async () => {
      ledger = await fetchLedger(apiUrl(), adminToken);
      return ledger.balanced;
    },
    { timeoutMs: 10_000, what: 'the ledger to balance' },
  ).catch((error: unknown) => problems.push(`ledger: ${error instanceof Error ? error.message : String(error)}`));
  if (ledger !== undefined) problems.push(...ledgerProblems(ledger, fault, expected));

  // 6. One line, whatever the outcome.
  const perReceiver = [...fault.receivers]
    .map(([id, r]) => `${id}: unique ${r.uniqueIds} dup ${r.duplicates} max ${r.maxArrivals} dead ${deadLettered.get(id)?.size ?? 0}`)
    .join(' | ');
  const statuses = loads.map((load) => load.statusSummary()).join(' ');
  console.log(
    `[faults] ${fault.name}: accepted ${accepted.length} req / ${mustArrive.length} tracked imp (${statuses}; unanswered ${unanswered.length}, ${unansweredArrived.length} of them enqueued) | ${perReceiver} | failed jobs ${failed.ingest + failed.delivery} | ledger ${describeLedger(ledger, environmentId)}`,
  );
  if (problems.length > 0) {
    const logs = processes.map((p) => `--- ${p.name} (${p.role}, ${p.alive ? 'running' : 'exited'}) ${p.logFile}\n${p.tail(6)}`).join('\n');
    throw new Error(`${fault.name}: ${problems.length} broken promise(s):\n- ${problems.join('\n- ')}\n${logs}`);
  }
  return { acceptedImpressions: mustArrive.length, ledger, problems };
}

interface ExpectedLedger {
  readonly received: number;
  readonly dropped: number;
  readonly routed: number;
  /** Impressions of requests dead-lettered by routing (`@routing`). */
  readonly routingDeadLettered: number;
  /** Keys dead-lettered, per destination. */
  readonly deadLettered: ReadonlyMap<string, ReadonlySet<string>>;
}

function ledgerProblems(ledger: LedgerReport, fault: Fault, expected: ExpectedLedger): string[] {
  const problems: string[] = [];
  if (!ledger.balanced) problems.push('ledger: not balanced');
  const environment = ledger.environments.find((e) => e.environmentId === environmentId);
  if (environment === undefined) return [...problems, `ledger: no environment ${environmentId}`];
  const check = (what: string, actual: unknown, wanted: unknown) => {
    if (JSON.stringify(actual) !== JSON.stringify(wanted)) problems.push(`ledger: ${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
  };
  check(`${environmentId}.received`, environment.received, expected.received);
  check(`${environmentId}.dropped`, environment.dropped, expected.dropped === 0 ? {} : { [trackingOffReason]: expected.dropped });
  check(`${environmentId}.routed`, environment.routed, expected.routed);
  check(`${environmentId}.replayed`, environment.replayed, 0);
  check(`${environmentId}.deadLettered`, environment.deadLettered, expected.routingDeadLettered);
  check(`${environmentId}.pending`, environment.pending, 0);
  check(`${environmentId}.difference`, environment.difference, 0);
  check(`${environmentId} destinations`, environment.destinations.map((d) => d.destinationId).sort(), [...fault.receivers.keys()].sort());
  for (const destination of environment.destinations) {
    const dead = expected.deadLettered.get(destination.destinationId)?.size ?? 0;
    const id = destination.destinationId;
    check(`${id}.routed`, destination.routed, expected.routed);
    check(`${id}.replayed`, destination.replayed, 0);
    check(`${id}.delivered`, destination.delivered, expected.routed - dead);
    check(`${id}.skipped`, destination.skipped, 0);
    check(`${id}.deadLettered`, destination.deadLettered, dead);
    check(`${id}.pending`, destination.pending, 0);
    check(`${id}.difference`, destination.difference, 0);
  }
  return problems;
}

/** Peak resident memory of processes, sampled while `during` runs. */
export async function samplePeakRss(processes: readonly FlagstreamProcess[], during: Promise<unknown>, everyMs = 250): Promise<Map<string, number>> {
  const peak = new Map<string, number>();
  const sample = () => {
    for (const p of processes) {
      const rss = p.rss();
      if (rss !== undefined) peak.set(p.name, Math.max(peak.get(p.name) ?? 0, rss));
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  try {
    await during;
  } finally {
    clearInterval(timer);
    sample();
  }
  return peak;
}
