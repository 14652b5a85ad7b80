// `npm run bench`: flagstream as a user runs it (`flagstream serve --config FILE`, or `--role api`
// and `--role worker` processes with --split), a private redis-server, a load generator and local
// sinks (signed webhook, Segment batch API, S3) each in its own process. Prints figures, asserts
// nothing; writes them as JSON under bench/results/ and prints that file's path last.
// Only public interfaces are used: the CLI, its YAML configuration, HTTP ingest, Redis INFO.
//
//   npm run bench [-- --quick] [--scenario N] [--split [--workers N] [--apis N]] [--baseline naive|none]
//                 [--cluster] [--partitions N]
//                 [--concurrency N] [--per-request N] [--batch-size N] [--batch-wait MS] [--scale F] [--soak]
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, release, totalmem, type as osType } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { partitionOf } from '../src/stores/redis-keys.js';
import { type BenchRedis, ClusterRedis, freePort, Helper, killEverything, PrivateRedis, pollUntil, repoRoot, scratch, ServerProcess, flagstreamBin } from './harness.js';
import type { LatencySummary, LoadResult, LoadSpec, SinkCounts, SinkKind, SinkReport } from './messages.js';

const usage = `npm run bench [-- options]
  --quick              small loads, under a minute (every column, fewer impressions)
  --scenario N         run scenario N only (1 one webhook, 2 fan-out, 3 100 destinations,
                       4 1 000 environments, 5 naive baseline; 6 backlog memory)
  --split              flagstream as separate --role api and --role worker processes
  --workers N          worker processes with --split (default 1)
  --apis N             API processes with --split (default 1)
  --baseline naive|none  run the hand-written BullMQ baseline (scenario 5, with scenario 1 as its
                       yardstick) or not; by default it runs whenever scenario 5 does
  --concurrency N      requests in flight (default 8)
  --per-request N      impressions per request in scenarios 1-3 and 5 (default 1000)
  --batch-size N       webhook batchSize of every destination (default 5000)
  --batch-wait MS      webhook maxBatchWait (default 1000, the connector's default)
  --scale F            multiply every load by F (the full loads suit a 2-core machine)
  --cluster            flagstream on a private three-master Redis Cluster (redis+cluster://)
                       instead of one redis-server; scenarios 1 and 2 then spread their load
                       over 3 environments (or N with --partitions N) so that partitions have
                       something to spread; Redis figures are the sums over the masters
  --partitions N       FLAGSTREAM_REDIS_PARTITIONS=N (implies --cluster when N > 1)
  --soak               scenario 1 paced at half its rate for 10 minutes (1 with --quick), RSS of
                       every process and Redis used_memory sampled every 10 s: flat or growing
  --help               this text
Environment variables FLAGSTREAM_* pass through to the flagstream processes (e.g. FLAGSTREAM_DELIVERY_CONCURRENCY).`;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    scenario: { type: 'string' },
    split: { type: 'boolean', default: false },
    workers: { type: 'string' },
    apis: { type: 'string' },
    baseline: { type: 'string' },
    concurrency: { type: 'string', default: '8' },
    'per-request': { type: 'string', default: '1000' },
    'batch-size': { type: 'string', default: '5000' },
    'batch-wait': { type: 'string', default: '1000' },
    scale: { type: 'string', default: '1' },
    cluster: { type: 'boolean', default: false },
    partitions: { type: 'string', default: '1' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const positive = (name: string, value: string | undefined, fallback: number, orZero = false): number => {
  const number = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(number) || number < 0 || (number === 0 && !orZero)) {
    console.error(`bench: --${name} must be a ${orZero ? 'non-negative' : 'positive'} number, not ${value}\n${usage}`);
    process.exit(2);
  }
  return number;
};
if (args.baseline !== undefined && args.baseline !== 'naive' && args.baseline !== 'none') {
  console.error(`bench: --baseline must be naive or none, not ${args.baseline}`);
  process.exit(2);
}
const quick = args.quick;
const scale = positive('scale', args.scale, 1);
const concurrency = Math.round(positive('concurrency', args.concurrency, 8));
const perRequest = Math.round(positive('per-request', args['per-request'], 1000));
const split = args.split || args.workers !== undefined || args.apis !== undefined;
const layout = { split, apis: split ? Math.round(positive('apis', args.apis, 1)) : 1, workers: split ? Math.round(positive('workers', args.workers, 1)) : 0 };
const partitions = Math.round(positive('partitions', args.partitions, 1));
if (partitions > 64) {
  console.error('bench: --partitions must be 1 to 64 (FLAGSTREAM_REDIS_PARTITIONS)');
  process.exit(2);
}
const onCluster = args.cluster || partitions > 1;
/** Environments scenarios 1 and 2 spread their load over: on a cluster, enough for every partition to have one. */
const spreadEnvironments = onCluster ? Math.max(3, partitions) : 1;
const onlyScenario = args.scenario === undefined ? undefined : Math.round(positive('scenario', args.scenario, 1));
if (onlyScenario !== undefined && (onlyScenario < 1 || onlyScenario > 6)) {
  console.error(`bench: --scenario must be 1 to 6\n${usage}`);
  process.exit(2);
}

/** Loads, in impressions; full runs last 10-20 s per scenario at this machine's speed (2 cores). */
const sized = (n: number) => Math.max(1, Math.round(n * scale));
const sizes = quick
  ? { one: sized(40_000), halfRateSeconds: 2, fanOut: sized(15_000), hundred: sized(1_000), environments: sized(3_000), naive: sized(2_000), backlog: sized(5_000), naiveBacklog: sized(500), soakSeconds: 60 }
  : { one: sized(600_000), halfRateSeconds: 10, fanOut: sized(150_000), hundred: sized(10_000), environments: sized(50_000), naive: sized(10_000), backlog: sized(50_000), naiveBacklog: sized(1_000), soakSeconds: 600 };
/** Webhook settings of every scenario: batches of 5 000 gathered for at most 1 s, unless told otherwise. */
const webhookBatch = { batchSize: Math.round(positive('batch-size', args['batch-size'], 5000)), maxBatchWait: Math.round(positive('batch-wait', args['batch-wait'], 1000, true)) };
const halfRateTarget = webhookBatch.maxBatchWait + 500;
const s3Batch = { maxRows: 10_000, maxWait: 2000 };
/** Ingest batches waiting above which ingest answers 503: about 200 000 impressions, whatever the request size. */
const backlogLimit = (requestSize: number) => String(Math.max(100, Math.round(200_000 / requestSize)));
/** A phase in which nothing is accepted or delivered for this long is given up (routing a large backlog can take a while). */
const stallMs = quick ? 30_000 : 120_000;

const flag = 'bench_flag';
const secret = `whsec_${randomBytes(24).toString('base64')}`;
const writeKey = `bench-write-key-${randomBytes(4).toString('hex')}`;
const bucket = 'bench-impressions';
const adminToken = randomBytes(16).toString('hex');

// ---------------------------------------------------------------- build

/** Newest modification time of the files under `dir`. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/** `serve` runs from dist/: build it when missing or older than src/ (the figures must be of this code). */
function buildIfStale(): void {
  const built = join(repoRoot, 'dist', 'cli', 'cli.js');
  const stale = !existsSync(built) || !existsSync(join(repoRoot, 'dist', 'ui', 'app.js')) || newest(join(repoRoot, 'src')) > statSync(built).mtimeMs;
  if (!stale) return;
  console.error('bench: building dist/ (missing or older than src/): npm run build');
  const result = spawnSync('npm', ['run', 'build', '--silent'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`npm run build failed (${result.status ?? result.signal})`);
}

// ---------------------------------------------------------------- deployments

type System = 'flagstream' | 'naive';

interface Deployment {
  readonly system: System;
  readonly redis: BenchRedis;
  readonly processes: readonly ServerProcess[];
  readonly apiUrls: readonly string[];
}

interface EnvironmentConfig {
  readonly id: string;
  readonly sdkKey: string;
  readonly destinations: readonly Record<string, unknown>[];
}

function configYaml(environments: readonly EnvironmentConfig[]): string {
  return stringify({
    environments: environments.map((e) => ({
      id: e.id,
      sdkKeys: [e.sdkKey],
      flags: [{ name: flag, trafficType: 'user', trackImpressions: true }],
      destinations: e.destinations,
    })),
  });
}

/** Starts a private Redis and the processes of `system` (in the chosen layout) with this configuration. */
async function deploy(system: System, name: string, environments: readonly EnvironmentConfig[], options: { requestSize: number; env?: Record<string, string> }): Promise<Deployment> {
  const deployStarted = Date.now();
  // The naive baseline knows one redis-server only.
  const redis: BenchRedis = system === 'flagstream' && onCluster ? await ClusterRedis.start() : await PrivateRedis.start();
  const file = join(scratch, `${name}.yaml`);
  writeFileSync(file, configYaml(environments));
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    // On a cluster, a prefix whose partitions are on different masters (as many as there are).
    FLAGSTREAM_REDIS_PREFIX: redis instanceof ClusterRedis ? await redis.prefixSpreadOver('bench', partitions) : 'bench',
    NAIVE_PREFIX: 'naive',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: adminToken,
    FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
    // info: the worker says when it has started; nothing is logged per request or job at info.
    FLAGSTREAM_LOG_LEVEL: 'info',
    FLAGSTREAM_LOG_FORMAT: 'json',
    FLAGSTREAM_INGEST_BACKLOG_LIMIT: backlogLimit(options.requestSize),
    FLAGSTREAM_SHUTDOWN_TIMEOUT: '5s',
    FLAGSTREAM_REDIS_PARTITIONS: String(partitions),
    ...options.env,
  };
  const roles: ('all' | 'api' | 'worker')[] = layout.split ? [...Array<'api'>(layout.apis).fill('api'), ...Array<'worker'>(layout.workers).fill('worker')] : ['all'];
  const processes: ServerProcess[] = [];
  try {
    // One after another: the first applies the configuration, the others find it unchanged.
    for (const [index, role] of roles.entries()) {
      const port = role === 'worker' ? undefined : await freePort();
      // BENCH_NODE_ARGS: extra node options for the flagstream processes (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
      const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
      const base = system === 'flagstream' ? [process.execPath, ...nodeArgs, flagstreamBin, 'serve'] : [process.execPath, '--import', 'tsx', join(repoRoot, 'bench', 'naive.ts')];
      const command = [...base, '--role', role, '--config', file, ...(port === undefined ? [] : ['--port', String(port)])];
      const readyLine = role === 'api' ? undefined : system === 'flagstream' ? (role === 'worker' ? 'flagstream worker started' : undefined) : 'naive worker started';
      const processName = `${system}-${role}${roles.filter((r) => r === role).length > 1 ? `-${index}` : ''}`;
      processes.push(await ServerProcess.start({ name: processName, command, env, ...(port === undefined ? {} : { port }), ...(readyLine === undefined ? {} : { readyLine }) }));
    }
  } catch (error) {
    for (const started of processes) await started.stop(1000);
    await redis.stop();
    throw error;
  }
  process.stderr.write(`bench:   ${name}: ${processes.length} ${system} process(es) ready in ${formatNumber((Date.now() - deployStarted) / 1000, 1)} s\n`);
  return { system, redis, processes, apiUrls: processes.filter((p) => p.port !== undefined).map((p) => p.url) };
}

async function undeploy(deployment: Deployment): Promise<void> {
  const stopping = Date.now();
  await Promise.all(deployment.processes.map((p) => p.stop()));
  await deployment.redis.stop();
  process.stderr.write(`bench:   stopped in ${formatNumber((Date.now() - stopping) / 1000, 1)} s\n`);
}

// ---------------------------------------------------------------- helpers (sinks, load generator)

type Sinks = Record<SinkKind, Helper>;
let sinks: Sinks;
let loadGenerator: Helper;

const sinkUrl = (kind: SinkKind) => String(sinks[kind].hello.url);
const webhook = (id: string, extra: Record<string, unknown> = {}) => ({ id, type: 'webhook', settings: { url: `${sinkUrl('webhook')}/${id}`, secret, ...webhookBatch }, ...extra });
const segment = (id: string) => ({ id, type: 'segment', settings: { writeKey, baseUrl: `${sinkUrl('segment')}/${id}` } });
const s3 = (id: string) => ({
  id,
  type: 's3',
  settings: { bucket, prefix: `${id}/`, endpoint: sinkUrl('s3'), forcePathStyle: true, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', ...s3Batch },
});

// ---------------------------------------------------------------- one measured phase

interface KindResult {
  /** Destinations of this kind each impression goes to. */
  readonly fanOut: number;
  readonly expected: number;
  readonly delivered: number;
  /** Deliveries per second to all destinations of this kind, first request sent → last delivery. */
  readonly deliveriesPerSecond: number;
  /** The same per impression (deliveriesPerSecond / fanOut): impressions/s through every destination of this kind. */
  readonly impressionsPerSecond: number;
  /** Impressions/s delivered (per destination) during the middle half of the sending period; null when sending took under 1 s. */
  readonly impressionsPerSecondWhileSending: number | null;
  readonly latencyMs: LatencySummary;
  readonly requests: number;
  readonly duplicates: number;
  readonly invalidSignatures: number;
}

interface PhaseResult {
  readonly name: string;
  readonly system: System;
  readonly complete: boolean;
  readonly problem?: string;
  readonly impressions: number;
  readonly load: Omit<LoadResult, 'acceptedPerKey'> & { readonly acceptedPerSecond: number };
  /** First request sent → last impression delivered. */
  readonly seconds: number;
  /** Impressions/s through every destination, first request sent → last delivery: the slowest kind's. */
  readonly impressionsPerSecond: number;
  readonly kinds: Partial<Record<SinkKind, KindResult>>;
  readonly cpuMicrosPerImpression: number;
  readonly cpuSecondsByProcess: Record<string, number>;
  readonly redisCommandsPerImpression: number;
  readonly redisCpuMicrosPerImpression: number;
  /** On a cluster (--cluster, --partitions): Redis commands of this phase on each master. */
  readonly redisCommandsPerNode?: number[];
  /** The ten most frequent commands (those inside Lua scripts included), calls per impression. */
  readonly redisTopCommandsPerImpression: Record<string, number>;
  readonly peakRssBytes: Record<string, number>;
  /** CPU the benchmark's own processes used on the same cores meanwhile, µs per impression. */
  readonly benchCpuMicrosPerImpression: { loadGenerator: number; sinks: number };
  readonly rssSamples?: { atSeconds: number; rssBytes: Record<string, number>; redisUsedMemory: number }[];
}


const helpersCpu = () => ({ loadGenerator: loadGenerator.cpuMicros(), sinks: Object.values(sinks).reduce((sum, s) => sum + s.cpuMicros(), 0) });

/**
 * Sends `spec`'s load to `deployment` and waits until every accepted impression has arrived at
 * every destination (counted as unique ids by the sinks), then reads the figures.
 * `fanOut`: destinations of each kind every impression goes to.
 */
async function measure(name: string, deployment: Deployment, spec: Omit<LoadSpec, 'targets'>, fanOut: Partial<Record<SinkKind, number>>, options: { rssEveryMs?: number } = {}): Promise<PhaseResult> {
  const kinds = Object.keys(fanOut) as SinkKind[];
  await Promise.all(Object.values(sinks).map((sink) => sink.ask('reset', { failing: false })));
  const cpuBefore = new Map(deployment.processes.map((p) => [p.name, p.cpuMicros()]));
  const callsBefore = await deployment.redis.commandCalls();
  const commandsBefore = [...callsBefore.values()].reduce((a, b) => a + b, 0);
  const redisCpuBefore = await deployment.redis.cpuMicros();
  const commandsPerNodeBefore = deployment.redis instanceof ClusterRedis ? await deployment.redis.commandsPerNode() : undefined;
  const helpersBefore = helpersCpu();
  const startedAt = Date.now();
  const rssSamples: NonNullable<PhaseResult['rssSamples']> = [];
  const peakSampler = setInterval(() => deployment.processes.forEach((p) => p.peakRss()), 1000);
  const rssSampler =
    options.rssEveryMs === undefined
      ? undefined
      : setInterval(
          () =>
            void deployment.redis.usedMemory().then((redisUsedMemory) =>
              rssSamples.push({ atSeconds: Math.round((Date.now() - startedAt) / 1000), rssBytes: Object.fromEntries(deployment.processes.map((p) => [p.name, p.rss()])), redisUsedMemory }),
            ),
          options.rssEveryMs,
        );

  let load: LoadResult | undefined;
  const loading = loadGenerator.ask<LoadResult>('run', { spec: { ...spec, targets: deployment.apiUrls } }).then((result) => (load = result));
  let problem: string | undefined;
  let counts = new Map<SinkKind, SinkCounts>();
  const expectedOf = (kind: SinkKind) => (load?.acceptedImpressions ?? 0) * (fanOut[kind] ?? 0);
  // Progress is anything new: impressions accepted by ingest or delivered to a sink.
  let lastState = '';
  let lastChange = Date.now();
  let lastPrinted = Date.now();
  for (;;) {
    counts = new Map(await Promise.all(kinds.map(async (kind) => [kind, await sinks[kind].ask<SinkCounts>('counts')] as const)));
    if (load !== undefined && kinds.every((kind) => (counts.get(kind)?.unique ?? 0) >= expectedOf(kind))) break;
    const accepted = load?.acceptedImpressions ?? (await loadGenerator.ask<{ accepted: number }>('progress')).accepted;
    const state = `${accepted} ${[...counts.values()].map((c) => c.unique).join(' ')}`;
    if (state !== lastState) {
      lastState = state;
      lastChange = Date.now();
    }
    if (Date.now() - lastPrinted >= 5000) {
      lastPrinted = Date.now();
      const arrived = kinds.map((kind) => `${kind} ${formatNumber(counts.get(kind)?.unique ?? 0)}`).join(', ');
      process.stderr.write(`bench:   ${formatNumber((Date.now() - startedAt) / 1000)} s: ${formatNumber(accepted)} impressions accepted${load === undefined ? '' : ' (all sent)'}; unique deliveries: ${arrived}\n`);
    }
    if (load?.firstRefusal != null) {
      problem = `ingest refused a request: ${load.firstRefusal}`;
      break;
    }
    if (Date.now() - lastChange > stallMs) {
      const have = kinds.map((kind) => `${kind} ${counts.get(kind)?.unique ?? 0} of ${load === undefined ? '?' : expectedOf(kind)}`).join(', ');
      problem = `timed out: nothing accepted or delivered for ${stallMs / 1000} s (${load === undefined ? 'load still sending' : 'load finished'}); unique deliveries: ${have}`;
      for (const server of deployment.processes) if (server.tail(3).trim() !== '') problem += `\n  ${server.name} log: ${server.tail(3).replace(/\n/g, '\n    ')}`;
      break;
    }
    await delay(100);
  }
  if (load === undefined) {
    await loadGenerator.ask('cancel');
    await loading;
  }
  const cpuSecondsByProcess = Object.fromEntries(deployment.processes.map((p) => [p.name, (p.cpuMicros() - (cpuBefore.get(p.name) ?? 0)) / 1_000_000]));
  const callsAfter = await deployment.redis.commandCalls();
  const commands = [...callsAfter.values()].reduce((a, b) => a + b, 0) - commandsBefore;
  // The commands that cost the most, per impression: where Redis round trips go.
  const topCommands = [...callsAfter]
    .map(([command, calls]) => [command, calls - (callsBefore.get(command) ?? 0)] as const)
    .filter(([, calls]) => calls > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10);
  const redisCpu = (await deployment.redis.cpuMicros()) - redisCpuBefore;
  const commandsPerNode =
    deployment.redis instanceof ClusterRedis && commandsPerNodeBefore !== undefined ? (await deployment.redis.commandsPerNode()).map((n, node) => n - (commandsPerNodeBefore[node] ?? 0)) : undefined;
  const helpersAfter = helpersCpu();
  clearInterval(peakSampler);
  if (rssSampler !== undefined) clearInterval(rssSampler);
  const reports = new Map(await Promise.all(kinds.map(async (kind) => [kind, await sinks[kind].ask<SinkReport>('report')] as const)));

  const finishedLoad = load as LoadResult;
  const impressions = finishedLoad.acceptedImpressions;
  const perImpression = (value: number) => (impressions === 0 ? 0 : value / impressions);
  const sendingMs = finishedLoad.finishedAt - finishedLoad.startedAt;
  // The middle half of the sending period: ramp-up and the last requests left out.
  const middle = sendingMs >= 1000 ? { from: finishedLoad.startedAt + sendingMs / 4, to: finishedLoad.startedAt + (3 * sendingMs) / 4 } : undefined;
  const kindResults: Partial<Record<SinkKind, KindResult>> = {};
  let lastArrival = finishedLoad.startedAt;
  for (const kind of kinds) {
    const report = reports.get(kind) as SinkReport;
    const kindFanOut = fanOut[kind] ?? 1;
    lastArrival = Math.max(lastArrival, report.lastArrival ?? 0);
    const deliveriesPerSecond = report.unique / (Math.max(1, (report.lastArrival ?? Date.now()) - finishedLoad.startedAt) / 1000);
    let whileSending: number | null = null;
    if (middle !== undefined) {
      const { origin, slotMs, counts: slots } = report.timeline;
      let arrived = 0;
      slots.forEach((count, slot) => {
        const at = origin + slot * slotMs;
        if (at >= middle.from && at < middle.to) arrived += count;
      });
      whileSending = arrived / ((middle.to - middle.from) / 1000) / kindFanOut;
    }
    kindResults[kind] = {
      fanOut: kindFanOut,
      expected: expectedOf(kind),
      delivered: report.unique,
      deliveriesPerSecond,
      impressionsPerSecond: deliveriesPerSecond / kindFanOut,
      impressionsPerSecondWhileSending: whileSending,
      latencyMs: report.latencyMs,
      requests: report.requests,
      duplicates: report.duplicates,
      invalidSignatures: report.invalidSignatures,
    };
    if (report.invalidSignatures > 0) problem = `${problem ?? ''}${problem === undefined ? '' : '; '}${kind}: ${report.invalidSignatures} request(s) with an invalid signature`;
  }
  const seconds = (lastArrival - finishedLoad.startedAt) / 1000;
  const { acceptedPerKey: _perKey, ...loadFigures } = finishedLoad;
  return {
    name,
    system: deployment.system,
    complete: problem === undefined,
    ...(problem === undefined ? {} : { problem }),
    impressions,
    load: { ...loadFigures, acceptedPerSecond: sendingMs > 0 ? impressions / (sendingMs / 1000) : 0 },
    seconds,
    impressionsPerSecond: Math.min(...Object.values(kindResults).map((k) => k.impressionsPerSecond)),
    kinds: kindResults,
    cpuMicrosPerImpression: perImpression(Object.values(cpuSecondsByProcess).reduce((a, b) => a + b, 0) * 1_000_000),
    cpuSecondsByProcess,
    redisCommandsPerImpression: perImpression(commands),
    redisTopCommandsPerImpression: Object.fromEntries(topCommands.map(([command, calls]) => [command, perImpression(calls)])),
    redisCpuMicrosPerImpression: perImpression(redisCpu),
    ...(commandsPerNode === undefined ? {} : { redisCommandsPerNode: commandsPerNode }),
    peakRssBytes: Object.fromEntries(deployment.processes.map((p) => [p.name, p.peakRss()])),
    benchCpuMicrosPerImpression: { loadGenerator: perImpression(helpersAfter.loadGenerator - helpersBefore.loadGenerator), sinks: perImpression(helpersAfter.sinks - helpersBefore.sinks) },
    ...(options.rssEveryMs === undefined ? {} : { rssSamples }),
  };
}

// ---------------------------------------------------------------- backlog memory

interface BacklogResult {
  readonly system: System;
  readonly impressions: number;
  /** Redis used_memory growth per impression held for 1 and for 3 failing destinations. */
  readonly bytesPerImpression: { oneDestination: number; threeDestinations: number };
  readonly ratio: number;
  readonly complete: boolean;
  readonly problem?: string;
}

/** used_memory once it has stopped moving: 5 readings 200 ms apart within 64 KiB or 0.5 %. */
async function settledMemory(redis: BenchRedis): Promise<number> {
  const readings: number[] = [];
  await pollUntil(
    async () => {
      readings.push(await redis.usedMemory());
      const last = readings.slice(-5);
      if (last.length < 5) return false;
      const spread = Math.max(...last) - Math.min(...last);
      return spread <= Math.max(64 * 1024, 0.005 * Math.max(...last));
    },
    { timeoutMs: 60_000, what: 'Redis memory to settle', everyMs: 200 },
  );
  return readings.at(-1) as number;
}

/**
 * Redis bytes per impression waiting for a destination that answers 503: N impressions into an
 * environment with 1 failing webhook, then N into one with 3. Retries are an hour away, so once
 * the sink has seen every impression attempted and Redis memory has settled, what Redis holds is
 * the backlog.
 */
async function backlogMemory(system: System, impressions: number): Promise<BacklogResult> {
  const failing = { delivery: { retrySchedule: ['1h'], circuitBreakerThreshold: 1_000_000 } };
  const environments: EnvironmentConfig[] = [
    { id: 'env-one', sdkKey: 'sdk-one', destinations: [webhook('fail-one', failing)] },
    { id: 'env-three', sdkKey: 'sdk-three', destinations: ['fail-three-a', 'fail-three-b', 'fail-three-c'].map((id) => webhook(id, failing)) },
  ];
  const deployment = await deploy(system, `${system}-backlog`, environments, { requestSize: perRequest, env: { NAIVE_RETRY_DELAY_MS: '3600000' } });
  try {
    await sinks.webhook.ask('reset', { failing: true });
    const held: number[] = [];
    let attemptedSoFar = 0;
    for (const [index, environment] of environments.entries()) {
      const before = await settledMemory(deployment.redis);
      const load = await loadGenerator.ask<LoadResult>('run', {
        spec: { targets: deployment.apiUrls, sdkKeys: [environment.sdkKey], perRequest, concurrency, total: impressions, tag: `${system}-backlog-${index}-${randomBytes(3).toString('hex')}`, flag } satisfies LoadSpec,
      });
      if (load.firstRefusal !== null) throw new Error(`ingest refused a request: ${load.firstRefusal}`);
      attemptedSoFar += load.acceptedImpressions * environment.destinations.length;
      const target = attemptedSoFar;
      await pollUntil(async () => (await sinks.webhook.ask<SinkCounts>('counts')).attempted >= target, {
        timeoutMs: stallMs * 2,
        what: `the failing sink to see all ${target} impression(s) attempted`,
        everyMs: 100,
      });
      held.push(((await settledMemory(deployment.redis)) - before) / load.acceptedImpressions);
    }
    const [one = 0, three = 0] = held;
    return { system, impressions, bytesPerImpression: { oneDestination: one, threeDestinations: three }, ratio: one > 0 ? three / one : 0, complete: true };
  } catch (error) {
    return { system, impressions, bytesPerImpression: { oneDestination: 0, threeDestinations: 0 }, ratio: 0, complete: false, problem: error instanceof Error ? error.message : String(error) };
  } finally {
    await sinks.webhook.ask('reset', { failing: false });
    await undeploy(deployment);
  }
}

// ---------------------------------------------------------------- scenarios

const tag = (name: string) => `${name}-${randomBytes(3).toString('hex')}`;
const oneWebhook = (): EnvironmentConfig[] => [{ id: 'env-bench', sdkKey: 'sdk-bench', destinations: [webhook('hook')] }];

/**
 * `env-bench` with `destinations`, or on a cluster `spreadEnvironments` copies of it whose ids
 * fall in partition 0, 1, … N-1 in turn (destination ids suffixed: they are unique per deployment).
 * Every copy sends to the same sinks, so an impression still reaches each kind once.
 */
function spread(destinations: (suffix: string) => Record<string, unknown>[]): EnvironmentConfig[] {
  if (spreadEnvironments === 1) return [{ id: 'env-bench', sdkKey: 'sdk-bench', destinations: destinations('') }];
  const ids: string[] = [];
  for (let n = 0; ids.length < spreadEnvironments; n += 1) {
    const id = `env-bench-${n}`;
    if (partitionOf(id, partitions) === ids.length % partitions) ids.push(id);
  }
  return ids.map((id, index) => ({ id, sdkKey: `sdk-bench-${index}`, destinations: destinations(`-${index}`) }));
}
const sdkKeysOf = (environments: readonly EnvironmentConfig[]) => environments.map((e) => e.sdkKey);
const loadOf = (sdkKeys: readonly string[], total: number, name: string, extra: Partial<LoadSpec> = {}): Omit<LoadSpec, 'targets'> => ({ sdkKeys, perRequest, concurrency, total, tag: tag(name), flag, ...extra });

async function scenarioOne(): Promise<{ full: PhaseResult; halfRate: PhaseResult; pace: number }> {
  const environments = spread((suffix) => [webhook(`hook${suffix}`)]);
  const deployment = await deploy('flagstream', 'scenario-1', environments, { requestSize: perRequest });
  try {
    const full = await measure('1 one webhook', deployment, loadOf(sdkKeysOf(environments), sizes.one, 's1'), { webhook: 1 });
    const rate = Math.max(1000, Math.round(full.impressionsPerSecond / 2));
    const halfRate = await measure(`1 half rate (${formatNumber(rate)}/s)`, deployment, loadOf(sdkKeysOf(environments), rate * sizes.halfRateSeconds, 's1-half', { impressionsPerSecond: rate }), { webhook: 1 });
    return { full, halfRate, pace: rate };
  } finally {
    await undeploy(deployment);
  }
}

async function scenarioFanOut(): Promise<PhaseResult> {
  const environments = spread((suffix) => [webhook(`hook${suffix}`), segment(`segment${suffix}`), s3(`s3${suffix}`)]);
  const deployment = await deploy('flagstream', 'scenario-2', environments, { requestSize: perRequest });
  try {
    return await measure('2 fan-out: webhook + segment + s3', deployment, loadOf(sdkKeysOf(environments), sizes.fanOut, 's2'), { webhook: 1, segment: 1, s3: 1 });
  } finally {
    await undeploy(deployment);
  }
}

async function scenarioHundred(): Promise<PhaseResult> {
  const destinations = Array.from({ length: 100 }, (_, i) => webhook(`hook-${String(i).padStart(3, '0')}`));
  const deployment = await deploy('flagstream', 'scenario-3', [{ id: 'env-bench', sdkKey: 'sdk-bench', destinations }], { requestSize: perRequest });
  try {
    return await measure('3 one environment, 100 webhooks', deployment, loadOf(['sdk-bench'], sizes.hundred, 's3'), { webhook: 100 });
  } finally {
    await undeploy(deployment);
  }
}

async function scenarioEnvironments(): Promise<PhaseResult> {
  const environments = Array.from({ length: 1000 }, (_, i) => {
    const id = String(i).padStart(4, '0');
    return { id: `env-${id}`, sdkKey: `sdk-${id}`, destinations: [webhook(`hook-${id}`)] };
  });
  const deployment = await deploy('flagstream', 'scenario-4', environments, { requestSize: 10 });
  try {
    return await measure('4 1 000 environments, 10 per request', deployment, loadOf(environments.map((e) => e.sdkKey), sizes.environments, 's4', { perRequest: 10 }), { webhook: 1 });
  } finally {
    await undeploy(deployment);
  }
}

async function scenarioNaive(): Promise<PhaseResult> {
  const deployment = await deploy('naive', 'scenario-5', oneWebhook(), { requestSize: perRequest });
  try {
    return await measure('5 naive: a BullMQ job per impression', deployment, loadOf(['sdk-bench'], sizes.naive, 's5'), { webhook: 1 });
  } finally {
    await undeploy(deployment);
  }
}

interface Flatness {
  readonly earlyMiB: number;
  readonly lateMiB: number;
  readonly growth: number;
  readonly flat: boolean;
}

/**
 * Scenario 1 once at full speed (to know its rate), then paced at half that rate for
 * `sizes.soakSeconds`, RSS of every process and Redis used_memory sampled every 10 s. Paced,
 * not flat out: flat out, a backlog grows by design and the question would be another one.
 */
async function soak(): Promise<{ calibration: PhaseResult; phase: PhaseResult; memory: Record<string, Flatness> }> {
  const deployment = await deploy('flagstream', 'soak', oneWebhook(), { requestSize: perRequest });
  try {
    const calibration = await measure('1 one webhook (soak calibration)', deployment, loadOf(['sdk-bench'], sizes.one, 's1'), { webhook: 1 });
    const rate = Math.max(1000, Math.round(calibration.impressionsPerSecond / 2));
    const phase = await measure(
      `soak: ${formatNumber(rate)}/s for ${sizes.soakSeconds} s`,
      deployment,
      loadOf(['sdk-bench'], 0, 'soak', { total: undefined, durationMs: sizes.soakSeconds * 1000, impressionsPerSecond: rate }),
      { webhook: 1 },
      { rssEveryMs: 10_000 },
    );
    // Flat: the mean of the last quarter of the samples is within 10 % of the second quarter's (the first is warm-up).
    const samples = phase.rssSamples ?? [];
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const flatness = (valueOf: (sample: (typeof samples)[number]) => number): Flatness => {
      const mean = (part: typeof samples) => part.reduce((sum, sample) => sum + valueOf(sample), 0) / Math.max(1, part.length) / 1024 / 1024;
      const early = mean(samples.slice(quarter, 2 * quarter));
      const late = mean(samples.slice(-quarter));
      const growth = early > 0 ? late / early - 1 : 0;
      return { earlyMiB: early, lateMiB: late, growth, flat: growth <= 0.1 };
    };
    const memory: Record<string, Flatness> = {};
    for (const server of deployment.processes) memory[`${server.name} RSS`] = flatness((sample) => sample.rssBytes[server.name] ?? 0);
    memory['Redis used_memory'] = flatness((sample) => sample.redisUsedMemory);
    return { calibration, phase, memory };
  } finally {
    await undeploy(deployment);
  }
}

// ---------------------------------------------------------------- printing

function formatNumber(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }).replace(/,/g, ' ');
}
const mib = (bytes: number) => formatNumber(bytes / 1024 / 1024);

function table(rows: readonly (readonly string[])[], header: readonly string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i <= 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const header = ['scenario', 'destination', 'impressions', 'imp/s', 'while sending', 'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', 'CPU µs/imp', 'Redis cmd/imp', 'Redis µs/imp', 'peak RSS MiB'];

function phaseRows(phase: PhaseResult): string[][] {
  const rss = Object.entries(phase.peakRssBytes).map(([name, bytes]) => (Object.keys(phase.peakRssBytes).length > 1 ? `${name.replace(/^(flagstream|naive)-/, '')} ${mib(bytes)}` : mib(bytes))).join(', ');
  const rows = Object.entries(phase.kinds).map(([kind, k], i) => [
    i === 0 ? `${phase.name}${phase.complete ? '' : ' (INCOMPLETE)'}` : '',
    k.fanOut > 1 ? `${kind} ×${k.fanOut}` : kind,
    i === 0 ? formatNumber(phase.impressions) : '',
    formatNumber(k.impressionsPerSecond),
    k.impressionsPerSecondWhileSending === null ? '-' : formatNumber(k.impressionsPerSecondWhileSending),
    formatNumber(k.deliveriesPerSecond),
    formatNumber(k.latencyMs.p50),
    formatNumber(k.latencyMs.p99),
    formatNumber(k.latencyMs.max),
    i === 0 ? formatNumber(phase.cpuMicrosPerImpression, 1) : '',
    i === 0 ? formatNumber(phase.redisCommandsPerImpression, 2) : '',
    i === 0 ? formatNumber(phase.redisCpuMicrosPerImpression, 1) : '',
    i === 0 ? rss : '',
  ]);
  return rows;
}

// ---------------------------------------------------------------- main

interface Results {
  version: 1;
  startedAt: string;
  finishedAt?: string;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  scenarios: PhaseResult[];
  halfRate?: { pacedImpressionsPerSecond: number; p50Ms: number; p99Ms: number; targetMs: number; met: boolean };
  naiveRatio?: Record<string, number>;
  backlog: BacklogResult[];
  soak?: Record<string, Flatness>;
  problems: string[];
}

async function main(): Promise<number> {
  buildIfStale();
  const started = new Date();
  const wanted = (n: number) => !args.soak && (onlyScenario === undefined || onlyScenario === n);
  // The baseline runs in a full run, with --scenario 5, or when asked for by name (then with scenario 1, its yardstick).
  const baseline = args.baseline === 'naive' || (args.baseline === undefined && wanted(5));
  const [webhookSink, segmentSink, s3Sink, generator] = await Promise.all([
    Helper.fork('webhook sink', 'sinks.ts', { BENCH_SINK: JSON.stringify({ kind: 'webhook', secret }) }),
    Helper.fork('segment sink', 'sinks.ts', { BENCH_SINK: JSON.stringify({ kind: 'segment', writeKey }) }),
    Helper.fork('s3 sink', 'sinks.ts', { BENCH_SINK: JSON.stringify({ kind: 's3', bucket }), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }),
    Helper.fork('load generator', 'load-generator.ts'),
  ]);
  sinks = { webhook: webhookSink, segment: segmentSink, s3: s3Sink };
  loadGenerator = generator;

  const probe = await PrivateRedis.start();
  const redisVersion = await probe.version();
  await probe.stop();
  const results: Results = {
    version: 1,
    startedAt: started.toISOString(),
    options: { quick, soak: args.soak, scenario: onlyScenario ?? 'all', layout, baseline: baseline ? 'naive' : 'none', concurrency, perRequest, scale, sizes, redis: onCluster ? 'cluster' : 'single', partitions, spreadEnvironments },
    machine: {
      cpuModel: cpus()[0]?.model ?? 'unknown',
      cpuCount: cpus().length,
      os: `${osType()} ${release()}`,
      memoryMiB: Math.round(totalmem() / 1024 / 1024),
      freeMemoryMiB: Math.round(freemem() / 1024 / 1024),
      loadAverageAtStart: loadavg(),
      node: process.version,
      redis: redisVersion,
    },
    settings: { webhook: webhookBatch, s3: s3Batch, segment: { batchSize: 'default (500)' }, ingestBacklogLimitImpressions: 200_000, redis: '--save "" --appendonly no', halfRateTargetMs: halfRateTarget },
    scenarios: [],
    backlog: [],
    problems: [],
  };
  const layoutText = layout.split ? `${layout.apis} × serve --role api + ${layout.workers} × serve --role worker` : 'one serve process (--role all)';
  console.log(`flagstream bench${quick ? ' --quick' : ''}, ${started.toISOString()}`);
  console.log(`machine: ${cpus().length} × ${results.machine.cpuModel}, node ${process.version}, redis ${redisVersion} (private, no persistence), load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (onCluster) console.log(`redis: a private three-master Redis Cluster, FLAGSTREAM_REDIS_PARTITIONS=${partitions}; scenarios 1 and 2 over ${spreadEnvironments} environments`);
  console.log(`flagstream: ${layoutText}; load: ${concurrency} requests in flight, Split SDK bulk requests of ${formatNumber(perRequest)} impressions (scenario 4: 10); webhook batches of ${formatNumber(webhookBatch.batchSize)}, ${webhookBatch.maxBatchWait} ms wait`);
  console.log('');

  const run = async <T>(what: string, step: () => Promise<T>): Promise<T | undefined> => {
    process.stderr.write(`bench: ${what}…\n`);
    const stepStarted = Date.now();
    try {
      const result = await step();
      process.stderr.write(`bench: ${what}: ${formatNumber((Date.now() - stepStarted) / 1000, 1)} s\n`);
      return result;
    } catch (error) {
      const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
      results.problems.push(message);
      process.stderr.write(`bench: ${message}\n`);
      return undefined;
    }
  };
  let scenarioOneResult: PhaseResult | undefined;
  if (wanted(1) || baseline) {
    const one = await run('scenario 1 (one webhook) and its half-rate run', scenarioOne);
    if (one !== undefined) {
      scenarioOneResult = one.full;
      results.scenarios.push(one.full, one.halfRate);
      const latency = one.halfRate.kinds.webhook?.latencyMs;
      const p99 = latency?.p99 ?? 0;
      results.halfRate = { pacedImpressionsPerSecond: one.pace, p50Ms: latency?.p50 ?? 0, p99Ms: p99, targetMs: halfRateTarget, met: p99 <= halfRateTarget };
    }
  }
  if (wanted(2)) results.scenarios.push(...[await run('scenario 2 (fan-out to webhook, segment, s3)', scenarioFanOut)].filter((r) => r !== undefined));
  if (wanted(3)) results.scenarios.push(...[await run('scenario 3 (100 destinations)', scenarioHundred)].filter((r) => r !== undefined));
  if (wanted(4)) results.scenarios.push(...[await run('scenario 4 (1 000 environments)', scenarioEnvironments)].filter((r) => r !== undefined));
  if (baseline) {
    const naive = await run('scenario 5 (naive BullMQ baseline)', scenarioNaive);
    if (naive !== undefined) {
      results.scenarios.push(naive);
      if (scenarioOneResult !== undefined) {
        const ours = scenarioOneResult;
        const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
        results.naiveRatio = {
          impressionsPerSecond: ratio(ours.impressionsPerSecond, naive.impressionsPerSecond),
          cpuMicrosPerImpression: ratio(ours.cpuMicrosPerImpression, naive.cpuMicrosPerImpression),
          redisCommandsPerImpression: ratio(ours.redisCommandsPerImpression, naive.redisCommandsPerImpression),
          redisCpuMicrosPerImpression: ratio(ours.redisCpuMicrosPerImpression, naive.redisCpuMicrosPerImpression),
          peakRss: ratio(Object.values(ours.peakRssBytes).reduce((a, b) => a + b, 0), Object.values(naive.peakRssBytes).reduce((a, b) => a + b, 0)),
        };
      }
    }
  }
  if (wanted(6) || wanted(1)) {
    const ours = await run('backlog memory (destinations answering 503)', () => backlogMemory('flagstream', sizes.backlog));
    if (ours !== undefined) results.backlog.push(ours);
    if (baseline) {
      const naive = await run('backlog memory of the naive baseline', () => backlogMemory('naive', sizes.naiveBacklog));
      if (naive !== undefined) results.backlog.push(naive);
    }
  }
  let soakResult: Awaited<ReturnType<typeof soak>> | undefined;
  if (args.soak) {
    soakResult = await run(`soak (${sizes.soakSeconds} s)`, soak);
    if (soakResult !== undefined) {
      results.scenarios.push(soakResult.calibration, soakResult.phase);
      results.soak = soakResult.memory;
    }
  }
  for (const phase of results.scenarios) if (!phase.complete) results.problems.push(`${phase.name}: ${phase.problem ?? 'incomplete'}`);

  // The report.
  const rows = results.scenarios.flatMap(phaseRows);
  if (results.naiveRatio !== undefined) {
    const r = results.naiveRatio;
    const times = (value: number | undefined, digits = 1) => (value === undefined || value === 0 ? '-' : `${formatNumber(value, digits)}×`);
    rows.push(['flagstream ÷ naive (scenario 1 ÷ 5)', '', '', times(r.impressionsPerSecond), '', '', '', '', '', times(r.cpuMicrosPerImpression, 2), times(r.redisCommandsPerImpression, 3), times(r.redisCpuMicrosPerImpression, 2), times(r.peakRss, 2)]);
  }
  console.log(table(rows, header));
  for (const phase of results.scenarios) {
    console.log(`${phase.name}: Redis commands per impression, most frequent: ${Object.entries(phase.redisTopCommandsPerImpression).map(([command, n]) => `${command} ${formatNumber(n, 4)}`).join(', ')}`);
    if (phase.redisCommandsPerNode !== undefined) console.log(`${phase.name}: Redis commands per master ${phase.redisCommandsPerNode.map((n) => formatNumber(n)).join(' / ')}`);
  }
  console.log('');
  console.log('imp/s: impressions/s delivered to every destination of that kind, first request sent → last delivery; deliveries/s: to all of them together;');
  console.log('while sending: impressions/s delivered (per destination) during the middle half of the time the load generator was sending.');
  console.log('latency: at the sink, now − receptionTimestamp (ingest to delivery). CPU: utime + stime of every flagstream (or naive) process, per impression ingested.');
  console.log('Redis: commands run (INFO commandstats, those inside Lua scripts included) and CPU (used_cpu_user + sys), per impression ingested.');
  if (results.naiveRatio !== undefined) console.log('flagstream ÷ naive: latencies are not compared: flat out, both measure how long a backlog takes to drain, and the loads differ in size.');
  if (results.halfRate !== undefined) {
    const h = results.halfRate;
    console.log(`half rate: paced at ${formatNumber(h.pacedImpressionsPerSecond)} impressions/s (half of scenario 1's), latency p50 ${formatNumber(h.p50Ms)} ms, p99 ${formatNumber(h.p99Ms)} ms (target p99 ≤ batch wait + 500 ms = ${formatNumber(h.targetMs)} ms: ${h.met ? 'met' : 'NOT met'})`);
  }
  for (const b of results.backlog) {
    console.log(
      b.complete
        ? `backlog (${b.system}, destinations answering 503, ${formatNumber(b.impressions)} impressions each): Redis ${formatNumber(b.bytesPerImpression.oneDestination)} bytes/impression for 1 destination, ${formatNumber(b.bytesPerImpression.threeDestinations)} for 3 (× ${formatNumber(b.ratio, 2)})`
        : `backlog (${b.system}): not measured: ${b.problem ?? ''}`,
    );
  }
  if (soakResult !== undefined) {
    for (const [name, r] of Object.entries(soakResult.memory)) {
      console.log(`soak: ${name} ${formatNumber(r.earlyMiB)} MiB (2nd quarter of the samples) → ${formatNumber(r.lateMiB)} MiB (last quarter), ${r.growth >= 0 ? '+' : ''}${formatNumber(r.growth * 100, 1)} %: ${r.flat ? 'flat' : 'GROWING'}`);
    }
  }
  for (const problem of results.problems) console.log(`problem: ${problem}`);

  results.finishedAt = new Date().toISOString();
  (results.machine as Record<string, unknown>).loadAverageAtEnd = loadavg();
  const directory = join(repoRoot, 'bench', 'results');
  mkdirSync(directory, { recursive: true });
  const file = join(directory, `bench-${started.toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}${args.soak ? '-soak' : ''}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  await Promise.all([...Object.values(sinks), loadGenerator].map((helper) => helper.stop()));
  const shown = relative(process.cwd(), file);
  console.log(shown.startsWith('..') ? file : shown);
  return results.problems.length === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  killEverything();
}
