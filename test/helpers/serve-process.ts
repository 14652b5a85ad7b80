import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './deferred.js';

const bin = fileURLToPath(new URL('../../bin/flagstream.js', import.meta.url));

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: number;
}

/**
 * `node bin/flagstream.js serve` (the built CLI, as users run it) in a child process, its JSON
 * log lines parsed as they come and its stderr kept. Tests wait on its lines and on its exit.
 */
export class ServeProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<Exit>;
  private readonly events = new EventEmitter();
  private readonly child: ChildProcess;

  private constructor(env: Record<string, string>, args: readonly string[]) {
    this.child = spawn(process.execPath, [bin, 'serve', ...args], {
      env: { ...process.env, HOST: '127.0.0.1', PORT: '0', FLAGSTREAM_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const complete = text.split('\n');
      partial = complete.pop() ?? '';
      for (const line of complete) if (line.trim() !== '') this.lines.push(JSON.parse(line) as LogLine);
      this.events.emit('change');
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      this.events.emit('change');
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  }

  /** Starts `serve` and resolves with it once it listens (or, for `--role worker`, once it started). */
  static async start(env: Record<string, string>, args: readonly string[] = []): Promise<ServeProcess> {
    const serve = new ServeProcess(env, args);
    const exitedEarly = serve.exited.then((exit) => {
      throw new Error(`serve exited before it started (${JSON.stringify(exit)}): ${serve.stderr}`);
    });
    await Promise.race([serve.waitForLine((line) => /^flagstream (listening|worker started)/.test(line.msg), 30_000), exitedEarly]);
    exitedEarly.catch(() => undefined);
    return serve;
  }

  get url(): string {
    const line = this.lines.find((l) => typeof l.address === 'string');
    if (line === undefined) throw new Error('serve has not said where it listens');
    return line.address as string;
  }

  /** Polls /readyz until it answers 200 (workers started, Redis answering). */
  async waitUntilReady(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(5000) }).then(
        (response) => response.status,
        () => 0,
      );
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`serve not ready after ${timeoutMs} ms (last /readyz status ${status})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  waitForLine(matches: (line: LogLine) => boolean, timeoutMs = 15_000, what = 'a log line'): Promise<void> {
    return this.waitFor(() => this.lines.some(matches), timeoutMs, what);
  }

  waitFor(condition: () => boolean, timeoutMs = 15_000, what = 'a condition'): Promise<void> {
    return waitUntil(condition, (onChange) => this.subscribe(onChange), timeoutMs, what);
  }

  signal(signal: NodeJS.Signals): number {
    this.child.kill(signal);
    return Date.now();
  }

  /** The exit, or a rejection once `timeoutMs` has passed without one. */
  async exitWithin(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`serve did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** For `after` hooks: makes sure nothing is left running. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  private subscribe(onChange: () => void): () => void {
    this.events.on('change', onChange);
    return () => this.events.off('change', onChange);
  }
}
