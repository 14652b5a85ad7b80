// Processes of `npm run bench` and what is read from them: a private redis-server, flagstream
// (or baseline) server processes, forked children that answer questions over IPC, and /proc
// figures. Every child is registered so that it is killed on any exit, error or signal included.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { Question } from './messages.js';
import { LocalRedisCluster } from '../src/runtime/local-redis-cluster.js';
import { freePort } from '../src/runtime/redis-connection.js';

export { freePort };

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const flagstreamBin = join(repoRoot, 'bin', 'flagstream.js');

const children = new Set<ChildProcess>();
export const scratch = mkdtempSync(join(tmpdir(), 'flagstream-bench-'));

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills every child still running and removes the scratch folder; safe to call more than once. */
export function killEverything(): void {
  for (const child of children) if (alive(child)) child.kill('SIGKILL');
  children.clear();
  rmSync(scratch, { recursive: true, force: true });
}
process.once('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}: stopping every child process\n`);
    killEverything();
    process.exit(130);
  });
}

export function exitOf(child: ChildProcess): Promise<void> {
  return alive(child) ? new Promise((resolve) => child.once('exit', () => resolve())) : Promise.resolve();
}

/** Polls `condition` every `everyMs` until it holds; throws `what` after `timeoutMs`. */
export async function pollUntil(condition: () => Promise<boolean> | boolean, options: { timeoutMs: number; what: string; everyMs?: number }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${options.what}`);
    await delay(options.everyMs ?? 100);
  }
}


/** CPU time (user + system) of a process so far, in microseconds; undefined once it is gone. */
export function cpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3: utime is field 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / clockTicks;
  } catch {
    return undefined;
  }
}
const clockTicks = 100; // sysconf(_SC_CLK_TCK): 100 on every Linux architecture Node supports

/** `VmHWM` (peak resident set) or `VmRSS` of a process, in bytes. */
export function memoryOf(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** What the benchmark reads from the Redis of a deployment: one redis-server, or every master of a cluster summed. */
export interface BenchRedis {
  /** REDIS_URL of the flagstream processes. */
  readonly url: string;
  /** Commands Redis ran so far, INFO (the benchmark's own probe) left out. */
  commands(): Promise<number>;
  /** The same per command name. */
  commandCalls(): Promise<Map<string, number>>;
  usedMemory(): Promise<number>;
  /** CPU time Redis used so far (user + system), µs. */
  cpuMicros(): Promise<number>;
  version(): Promise<string>;
  stop(): Promise<void>;
}

/** INFO `section` of `client`, as fields. */
async function infoOf(client: Redis, section: string): Promise<Map<string, string>> {
  const text = await client.info(section);
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** Calls so far per command (`INFO commandstats`; INFO itself, the benchmark's probe, left out). */
async function commandCallsOf(client: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const [name, value] of await infoOf(client, 'commandstats')) {
    if (name === 'cmdstat_info') continue;
    calls.set(name.replace(/^cmdstat_/, ''), Number(/calls=(\d+)/.exec(value)?.[1] ?? 0));
  }
  return calls;
}

async function commandsOf(client: Redis): Promise<number> {
  let total = 0;
  for (const count of (await commandCallsOf(client)).values()) total += count;
  return total;
}

function sumCalls(maps: readonly Map<string, number>[]): Map<string, number> {
  const total = new Map<string, number>();
  for (const calls of maps) for (const [name, count] of calls) total.set(name, (total.get(name) ?? 0) + count);
  return total;
}

async function cpuMicrosOf(client: Redis): Promise<number> {
  const info = await infoOf(client, 'cpu');
  return (Number(info.get('used_cpu_user')) + Number(info.get('used_cpu_sys'))) * 1_000_000;
}

/** A redis-server of the benchmark's own, on a free port, with no persistence: clean figures. */
export class PrivateRedis implements BenchRedis {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    readonly client: Redis,
  ) {}

  static async start(): Promise<PrivateRedis> {
    const port = await freePort();
    const dir = mkdtempSync(join(scratch, 'redis-'));
    const child = track(
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' }),
    );
    const started = new Promise<never>((_, reject) => child.once('error', (error) => reject(new Error(`cannot start redis-server (${error.message}): install it (apt-get install redis-server, brew install redis)`))));
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    // Refused connections until the server listens are expected; a failing command still throws.
    client.on('error', () => undefined);
    const ready = pollUntil(async () => (await client.ping().catch(() => '')) === 'PONG', { timeoutMs: 10_000, what: `redis-server on port ${port}`, everyMs: 50 });
    await Promise.race([ready, started]);
    return new PrivateRedis(port, child, client);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  async info(section: string): Promise<Map<string, string>> {
    return infoOf(this.client, section);
  }

  async commands(): Promise<number> {
    return commandsOf(this.client);
  }

  async commandCalls(): Promise<Map<string, number>> {
    return commandCallsOf(this.client);
  }

  async usedMemory(): Promise<number> {
    return Number((await this.info('memory')).get('used_memory'));
  }

  async cpuMicros(): Promise<number> {
    return cpuMicrosOf(this.client);
  }

  async version(): Promise<string> {
    return (await this.info('server')).get('redis_version') ?? 'unknown';
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    const exited = exitOf(this.child);
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** A private three-master Redis Cluster (src/runtime/local-redis-cluster.ts); figures are the sums over its masters. */
export class ClusterRedis implements BenchRedis {
  private constructor(
    private readonly cluster: LocalRedisCluster,
    private readonly nodes: readonly Redis[],
  ) {}

  static async start(): Promise<ClusterRedis> {
    const cluster = await LocalRedisCluster.start(20_000, { onSpawn: track });
    const nodes = cluster.ports.map((port) => {
      const node = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => 50 });
      node.on('error', () => undefined);
      return node;
    });
    return new ClusterRedis(cluster, nodes);
  }

  get url(): string {
    return this.cluster.url;
  }

  /** See LocalRedisCluster.prefixSpreadOver. */
  prefixSpreadOver(stem: string, partitions: number): Promise<string> {
    return this.cluster.prefixSpreadOver(stem, partitions);
  }

  private async sum(read: (node: Redis) => Promise<number>): Promise<number> {
    return (await Promise.all(this.nodes.map(read))).reduce((total, n) => total + n, 0);
  }

  commands(): Promise<number> {
    return this.sum(commandsOf);
  }

  async commandCalls(): Promise<Map<string, number>> {
    return sumCalls(await Promise.all(this.nodes.map(commandCallsOf)));
  }

  usedMemory(): Promise<number> {
    return this.sum(async (node) => Number((await infoOf(node, 'memory')).get('used_memory')));
  }

  cpuMicros(): Promise<number> {
    return this.sum(cpuMicrosOf);
  }

  /** Commands per master so far (how evenly a partitioned deployment spreads). */
  async commandsPerNode(): Promise<number[]> {
    return Promise.all(this.nodes.map(commandsOf));
  }

  async version(): Promise<string> {
    const [node] = this.nodes;
    return node === undefined ? 'unknown' : ((await infoOf(node, 'server')).get('redis_version') ?? 'unknown');
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) node.disconnect();
    await this.cluster.stop();
  }
}

export interface ServerProcessOptions {
  readonly name: string;
  readonly command: readonly string[];
  readonly env: Record<string, string>;
  /** Port of its HTTP API; undefined for a worker. */
  readonly port?: number;
  /** Ready once its log holds this text (and, with a port, GET /readyz answers 200). */
  readonly readyLine?: string;
}

/** One server process (flagstream `serve`, or the baseline), its log in a file. */
export class ServerProcess {
  private peak = 0;

  private constructor(
    readonly name: string,
    readonly port: number | undefined,
    private readonly child: ChildProcess,
    private readonly logFile: string,
  ) {}

  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const logFile = join(scratch, `${options.name}-${Date.now()}.log`);
    const log = openSync(logFile, 'a');
    const [command, ...args] = options.command as [string, ...string[]];
    const child = track(spawn(command, args, { cwd: repoRoot, env: { ...process.env, ...options.env }, stdio: ['ignore', log, log] }));
    closeSync(log);
    const started = new ServerProcess(options.name, options.port, child, logFile);
    await pollUntil(
      async () => {
        if (!alive(child)) throw new Error(`${options.name} exited while starting:\n${started.tail()}`);
        if (options.readyLine !== undefined && !started.log().includes(options.readyLine)) return false;
        if (options.port === undefined) return true;
        return (await fetch(`${started.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200;
      },
      { timeoutMs: 60_000, what: `${options.name} to be ready`, everyMs: 100 },
    );
    return started;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  tail(lines = 12): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }

  cpuMicros(): number {
    return cpuMicros(this.pid) ?? 0;
  }

  /** Peak RSS so far (VmHWM, kept by the kernel); the last value read survives the process. */
  peakRss(): number {
    this.peak = Math.max(this.peak, memoryOf(this.pid, 'VmHWM') ?? 0);
    return this.peak;
  }

  rss(): number {
    return memoryOf(this.pid, 'VmRSS') ?? 0;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.peakRss();
    if (!alive(this.child)) return;
    const exited = exitOf(this.child);
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** A forked TypeScript child that answers questions over IPC (`{ replyTo: id }`). */
export class Helper {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (answer: unknown) => void; reject: (error: Error) => void }>();

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly hello: Record<string, unknown>,
  ) {
    child.on('message', (message: { replyTo?: number }) => {
      const waiter = message.replyTo === undefined ? undefined : this.waiting.get(message.replyTo);
      if (waiter === undefined || message.replyTo === undefined) return;
      this.waiting.delete(message.replyTo);
      waiter.resolve(message);
    });
    child.once('exit', (code, signal) => {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`${name} exited (${code ?? signal}) before answering`));
      this.waiting.clear();
    });
  }

  /** Forks `bench/<script>` with tsx and waits for its first message. */
  static async fork(name: string, script: string, env: Record<string, string> = {}): Promise<Helper> {
    const child = track(fork(join(repoRoot, 'bench', script), [], { cwd: repoRoot, execArgv: ['--import', 'tsx'], env: { ...process.env, BENCH_SCRATCH: scratch, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const hello = await new Promise<Record<string, unknown>>((resolve, reject) => {
      child.once('message', (message: Record<string, unknown>) => resolve(message));
      child.once('exit', (code) => reject(new Error(`${name} (${script}) exited with ${code} while starting`)));
    });
    return new Helper(name, child, hello);
  }

  ask<T>(type: string, fields: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: (answer) => resolve(answer as T), reject });
      const question: Question & Record<string, unknown> = { id, type, ...fields };
      this.child.send(question);
    });
  }

  cpuMicros(): number {
    return cpuMicros(this.child.pid ?? -1) ?? 0;
  }

  async stop(): Promise<void> {
    const exited = exitOf(this.child);
    this.child.kill('SIGTERM');
    await exited;
  }
}
