// Real processes for the fault suite: a private redis-server and `flagstream serve` as a user runs
// them (node bin/flagstream.js, built by `npm run build`). Every wait polls an observable state
// with a timeout; nothing sleeps to synchronise.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { redisAnswers } from '../../src/runtime/redis-connection.js';
import { stringify } from 'yaml';
import { freePort } from '../../src/runtime/redis-connection.js';

export { freePort };

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const flagstreamBin = join(repoRoot, 'bin', 'flagstream.js');


/** Polls `check` every `everyMs` until it returns true; throws naming `what` (computed then, if a function) after `timeoutMs`. */
export async function pollUntil(check: () => boolean | Promise<boolean>, options: { timeoutMs: number; what: string | (() => string); everyMs?: number }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${typeof options.what === 'string' ? options.what : options.what()}`);
    // The polling interval of an observable state, not a synchronisation sleep.
    await delay(options.everyMs ?? 100);
  }
}

/** A scratch folder per test file; `FAULTS_KEEP=1` keeps it (logs, Redis data) for a post-mortem. */
export function scratchDir(name: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `flagstream-faults-${name}-`));
  return {
    path,
    remove() {
      if (process.env.FAULTS_KEEP === '1') console.log(`# kept ${path}`);
      else rmSync(path, { recursive: true, force: true });
    },
  };
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Resident set size of a live process, from /proc (kB → bytes). */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/**
 * A private `redis-server` on its own port and folder with appendonly on, so SHUTDOWN and a
 * restart on the same port and folder keep everything (never the shared Redis on 6379).
 */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  /** The suite's own client (queue counts); it reconnects across restarts. */
  readonly client: Redis;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {
    this.client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 2, retryStrategy: () => 100, enableOfflineQueue: true });
    this.client.on('error', () => undefined);
  }

  static async start(dir: string): Promise<PrivateRedis> {
    mkdirSync(dir, { recursive: true });
    const redis = new PrivateRedis(await freePort(), dir);
    await redis.startServer();
    await redis.client.connect();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts redis-server (again) on the same port and folder; resolves once it answers PING. */
  async startServer(): Promise<void> {
    const log = openSync(join(this.dir, 'redis.log'), 'a');
    this.child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    const child = this.child;
    await pollUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}; see ${join(this.dir, 'redis.log')}`);
        // PING fails while the AOF is still LOADING: ready means loaded too.
        return redisAnswers(`redis://127.0.0.1:${this.port}`);
      },
      { timeoutMs: 15_000, what: `redis-server on port ${this.port}` },
    );
  }

  /** SHUTDOWN (the AOF is flushed) and waits for the process to exit. */
  async shutdown(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running) return;
    const exited = exitOf(child);
    await runCommand('redis-cli', ['-p', String(this.port), 'shutdown']);
    await withTimeout(exited, 15_000, 'redis-server to exit after SHUTDOWN');
  }

  async restart(): Promise<void> {
    await this.shutdown();
    await this.startServer();
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    const child = this.child;
    if (child === undefined || !this.running) return;
    const exited = exitOf(child);
    child.kill('SIGKILL');
    await exited;
  }
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCommand(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 30_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export type Role = 'all' | 'api' | 'worker';

/** The environment of every flagstream process of a test file. */
export interface FlagstreamEnv {
  readonly REDIS_URL: string;
  readonly ADMIN_TOKEN: string;
  readonly [name: string]: string;
}

/** `flagstream ARGS` from the built bin, as a user runs it. */
export function runFlagstreamCli(args: readonly string[], env: FlagstreamEnv, timeoutMs = 30_000): Promise<CommandResult> {
  return runCommand(process.execPath, [flagstreamBin, ...args], { env: { ...process.env, FLAGSTREAM_LOG_LEVEL: 'warn', ...env }, timeoutMs });
}

/** Writes `config` as YAML and runs `flagstream apply -f` on it; throws with the CLI's message if it fails. */
export async function applyConfig(config: unknown, env: FlagstreamEnv, dir: string): Promise<void> {
  const file = join(dir, `flagstream-${Date.now()}.yaml`);
  writeFileSync(file, stringify(config));
  const result = await runFlagstreamCli(['apply', '-f', file], env);
  if (result.code !== 0) throw new Error(`flagstream apply failed (${result.code}): ${result.stderr}${result.stdout}`);
}

/**
 * One `flagstream serve --role ROLE` process. Its log (JSON lines, info level) goes to a file in
 * the scratch folder, read to know when a worker has started and quoted when a check fails.
 */
export class FlagstreamProcess {
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly name: string,
    readonly role: Role,
    readonly port: number | undefined,
    private readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = exitOf(child);
  }

  /** Starts the process and waits until it serves: /readyz answers 200 (api, all) or the worker says it started. */
  static async start(options: { name: string; role: Role; env: FlagstreamEnv; dir: string; port?: number; readyTimeoutMs?: number }): Promise<FlagstreamProcess> {
    const port = options.role === 'worker' ? undefined : (options.port ?? (await freePort()));
    // One file per start: a restarted process must not find its predecessor's "started" line.
    const logFile = join(options.dir, `${options.name}-${Date.now()}-${process.hrtime.bigint() % 1000n}.log`);
    const log = openSync(logFile, 'a');
    const child = spawn(process.execPath, [flagstreamBin, 'serve', '--role', options.role, ...(port === undefined ? [] : ['--port', String(port)])], {
      cwd: options.dir,
      env: { ...process.env, HOST: '127.0.0.1', FLAGSTREAM_LOG_LEVEL: 'info', ...options.env },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const started = new FlagstreamProcess(options.name, options.role, port, child, logFile);
    await started.waitReady(options.readyTimeoutMs ?? 30_000);
    return started;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    if (this.port === undefined) throw new Error(`${this.name} is a worker: it has no HTTP API`);
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /** The last lines of the log, for failure messages. */
  tail(lines = 15): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const what = `${this.name} (${this.role}) to be ready`;
    await pollUntil(
      async () => {
        if (!this.alive) throw new Error(`${this.name} exited while starting:\n${this.tail()}`);
        if (this.role === 'worker') return this.log().includes('"flagstream worker started"');
        return (await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200;
      },
      { timeoutMs, what, everyMs: 100 },
    ).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${this.tail()}`);
    });
  }

  /** kill -9: the process gets no chance to clean up. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /**
   * SIGTERM, then waits up to `timeoutMs` for the exit. Resolves with the time it took, or
   * `exited: false` (the process is then killed with SIGKILL so nothing is left running).
   * `whileStopping` runs once the process has logged that it is shutting down.
   */
  async terminate(timeoutMs: number, whileStopping?: () => Promise<void> | void): Promise<{ exited: boolean; ms: number; code: number | null; signal: NodeJS.Signals | null }> {
    const startedAt = Date.now();
    this.child.kill('SIGTERM');
    if (whileStopping !== undefined) {
      await pollUntil(() => this.log().includes('"shutting down"') || !this.alive, { timeoutMs, what: `${this.name} to start shutting down` });
      await whileStopping();
    }
    const outcome = await withTimeout(this.exited, Math.max(0, timeoutMs - (Date.now() - startedAt)), `${this.name} to exit`).catch(() => undefined);
    const ms = Date.now() - startedAt;
    if (outcome !== undefined) return { exited: true, ms, ...outcome };
    await this.kill();
    return { exited: false, ms, code: null, signal: null };
  }

  rss(): number | undefined {
    return rssBytes(this.pid);
  }
}
