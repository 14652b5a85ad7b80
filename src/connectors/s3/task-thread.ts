import { parentPort, Worker } from 'node:worker_threads';

/**
 * One worker thread for CPU-heavy pure functions, so they do not hold the shared event loop.
 * The main side (`TaskThread`) starts the thread on first use; the thread side (`serveTasks`)
 * answers. Tasks run one after another, each once all its input has arrived.
 *
 * Input crosses in parts, one message each, with a turn of the event loop between them:
 * `postMessage` clones synchronously on the sending thread, and 50 000 impressions at once take
 * 70–250 ms to clone; 1 000 at a time, one to a few ms. Results come back with their ArrayBuffers
 * transferred, not copied.
 */

/** Main thread → worker: an input part of a task, the call that runs it, or its cancellation. */
type ToThread =
  | { readonly task: number; readonly part: unknown }
  | { readonly task: number; readonly run: unknown }
  | { readonly task: number; readonly cancel: true };

/** Worker → main thread: a task's result, or the error it threw. */
type FromThread = { readonly task: number; readonly result: unknown } | { readonly task: number; readonly error: { readonly name: string; readonly message: string } };

interface Waiting {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** The thread itself failed (crashed, exited, could not start, was closed): not the handler's error. */
export class TaskThreadFailure extends Error {
  override readonly name = 'TaskThreadFailure';
}

const turnOfTheLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Starts the thread; a .ts entry means we run under tsx (tests, benchmarks), dist/ has the .js one. */
function startWorker(entry: URL, name: string): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { name });
  // Node 20's worker threads do not get the loader hooks tsx registers with --import (tsx#354),
  // so the thread registers them itself before importing its TypeScript entry.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true, name });
}

export class TaskThread {
  #worker: Worker | undefined;
  #nextTask = 1;
  readonly #waiting = new Map<number, Waiting>();

  /** `entry`: the module that calls `serveTasks`; `name` names the thread in errors. */
  constructor(
    private readonly entry: URL,
    private readonly name: string,
  ) {}

  /**
   * Sends `parts` (each cloned on its own), then `call`; resolves with what the thread's handler
   * returned, rejects with the error it threw (same name and message), or with a
   * `TaskThreadFailure` when the thread fails or is closed.
   */
  async run(parts: readonly unknown[], call: unknown): Promise<unknown> {
    const task = this.#nextTask;
    this.#nextTask += 1;
    const worker = this.#started();
    const settled = new Promise<unknown>((resolve, reject) => this.#waiting.set(task, { resolve, reject }));
    // Rejected while parts are still being sent (the thread died): awaited below, not unhandled.
    settled.catch(() => undefined);
    // Held open only while a task is under way: an idle thread never keeps the process alive.
    worker.ref();
    try {
      try {
        for (const part of parts) {
          if (this.#worker !== worker) break;
          worker.postMessage({ task, part } satisfies ToThread);
          await turnOfTheLoop();
        }
        if (this.#worker === worker) worker.postMessage({ task, run: call } satisfies ToThread);
      } catch (error) {
        // A part that cannot be cloned: the thread drops what it gathered for this task.
        if (this.#worker === worker) worker.postMessage({ task, cancel: true } satisfies ToThread);
        throw error;
      }
      return await settled;
    } finally {
      this.#waiting.delete(task);
      // A thread that failed or was closed is not ours to unref: close() holds it until it is gone.
      if (this.#waiting.size === 0 && this.#worker === worker) worker.unref();
    }
  }

  /** Terminates the thread; tasks under way reject. The next `run` starts a new one. */
  async close(): Promise<void> {
    const worker = this.#worker;
    if (worker === undefined) return;
    this.#fail(worker, new TaskThreadFailure(`the ${this.name} thread was closed`));
    // Held open until it has exited, else the process could end before terminate() settles.
    worker.ref();
    await worker.terminate();
  }

  #started(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = startWorker(this.entry, this.name);
    worker.unref();
    worker.on('message', (message: FromThread) => {
      const waiting = this.#waiting.get(message.task);
      if (waiting === undefined) return;
      if ('error' in message) waiting.reject(Object.assign(new Error(message.error.message), { name: message.error.name }));
      else waiting.resolve(message.result);
    });
    worker.on('error', (error) => this.#fail(worker, new TaskThreadFailure(`the ${this.name} thread failed: ${error.message}`, { cause: error })));
    worker.on('messageerror', (error) => {
      this.#fail(worker, new TaskThreadFailure(`the ${this.name} thread sent an unreadable message: ${error.message}`, { cause: error }));
      void worker.terminate();
    });
    worker.on('exit', (code) => this.#fail(worker, new TaskThreadFailure(`the ${this.name} thread exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }

  /** Every task under way rejects with `error`; the thread is forgotten, so the next task starts a fresh one. */
  #fail(worker: Worker, error: TaskThreadFailure): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
  }
}

/** What a thread's handler returns: the result, and the ArrayBuffers in it to move rather than copy. */
export interface TaskResult {
  readonly result: unknown;
  readonly transfer: readonly ArrayBuffer[];
}

/** In the worker thread: gathers each task's parts and answers its call with `handle`. */
export function serveTasks(handle: (parts: unknown[], call: unknown) => TaskResult): void {
  const port = parentPort;
  if (port === null) throw new Error('serveTasks runs in a worker thread');
  const gathered = new Map<number, unknown[]>();
  port.on('message', (message: ToThread) => {
    if ('part' in message) {
      const parts = gathered.get(message.task) ?? [];
      parts.push(message.part);
      gathered.set(message.task, parts);
      return;
    }
    const parts = gathered.get(message.task) ?? [];
    gathered.delete(message.task);
    if ('cancel' in message) return;
    let answer: TaskResult;
    try {
      answer = handle(parts, message.run);
    } catch (error) {
      const { name, message: text } = error instanceof Error ? error : new Error(String(error));
      port.postMessage({ task: message.task, error: { name, message: text } } satisfies FromThread);
      return;
    }
    port.postMessage({ task: message.task, result: answer.result } satisfies FromThread, [...new Set(answer.transfer)]);
  });
}
