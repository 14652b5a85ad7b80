import { setTimeout as delay } from 'node:timers/promises';

/** One Split SDK bulk request of the load, and what became of it. */
export interface SentRequest {
  readonly index: number;
  /** Keys of the impressions of tracked flags (they must be delivered if accepted). */
  readonly trackedKeys: readonly string[];
  /** Keys of impressions of a flag with tracking off (dropped, counted). */
  readonly droppedKeys: readonly string[];
  /** HTTP status, or `error` when no answer came (refused, reset, timed out): it may or may not have been accepted. */
  status: number | 'error';
  retryAfter?: string | null;
}

export interface LoadOptions {
  /** Base URLs of the API processes; requests go round-robin. A function, so a restarted API is picked up. */
  readonly targets: () => readonly string[];
  readonly sdkKey: string;
  /** Distinguishes this load's keys from any other's. */
  readonly tag: string;
  readonly trackedFlag: string;
  readonly droppedFlag: string;
  /** Impressions per request: `tracked` of the tracked flag and `dropped` of the other. */
  readonly tracked: number;
  readonly dropped: number;
  readonly requestTimeoutMs?: number;
}

/**
 * Split SDK bulk requests (`POST /api/testImpressions/bulk`) with a unique key per impression,
 * recording which requests were accepted (2xx), refused (any other status: nothing of them may
 * arrive) or unanswered (they may arrive, but only whole).
 */
export class ImpressionLoad {
  readonly sent: SentRequest[] = [];
  private nextTarget = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(private readonly options: LoadOptions) {}

  get accepted(): SentRequest[] {
    return this.sent.filter((r) => typeof r.status === 'number' && r.status >= 200 && r.status < 300);
  }

  get refused(): SentRequest[] {
    return this.sent.filter((r) => typeof r.status === 'number' && (r.status < 200 || r.status >= 300));
  }

  get unanswered(): SentRequest[] {
    return this.sent.filter((r) => r.status === 'error');
  }

  countStatus(status: number | 'error'): number {
    return this.sent.filter((r) => r.status === status).length;
  }

  /** Statuses seen (from request `from` on), e.g. `202×120 503×14 error×3`; `error` includes requests still under way. */
  statusSummary(from = 0): string {
    const counts = new Map<string, number>();
    for (const r of this.sent.slice(from)) counts.set(String(r.status), (counts.get(String(r.status)) ?? 0) + 1);
    return [...counts].map(([status, n]) => `${status}×${n}`).join(' ');
  }

  /**
   * Records one more request and returns it with its body and headers, for a caller that sends
   * it its own way; the caller sets `status` once answered.
   */
  prepare(): { request: SentRequest; path: string; body: string; headers: Record<string, string> } {
    const index = this.sent.length;
    const key = (kind: string, i: number) => `${this.options.tag}-${index}-${kind}${i}`;
    const request: SentRequest = {
      index,
      trackedKeys: Array.from({ length: this.options.tracked }, (_, i) => key('t', i)),
      droppedKeys: Array.from({ length: this.options.dropped }, (_, i) => key('d', i)),
      status: 'error',
    };
    this.sent.push(request);
    const impression = (k: string, i: number) => ({ k, t: i % 2 === 0 ? 'on' : 'off', m: 1_718_900_000_000 + index * 1000 + i, c: 1_718_800_000_000, r: 'default rule' });
    const body = [
      { f: this.options.trackedFlag, i: request.trackedKeys.map(impression) },
      ...(request.droppedKeys.length > 0 ? [{ f: this.options.droppedFlag, i: request.droppedKeys.map(impression) }] : []),
    ];
    return {
      request,
      path: '/api/testImpressions/bulk',
      body: JSON.stringify(body),
      headers: { authorization: `Bearer ${this.options.sdkKey}`, 'content-type': 'application/json', SplitSDKVersion: 'nodejs-11.0.0', SplitSDKMachineIP: '10.0.0.1', SplitSDKMachineName: 'faults' },
    };
  }

  /** Sends one request and records its outcome. */
  async sendOne(): Promise<SentRequest> {
    const { request, path, body, headers } = this.prepare();
    const targets = this.options.targets();
    const target = targets[this.nextTarget++ % Math.max(targets.length, 1)];
    try {
      if (target === undefined) throw new Error('no API to send to');
      const response = await fetch(`${target}${path}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 15_000) });
      await response.arrayBuffer();
      request.status = response.status;
      request.retryAfter = response.headers.get('retry-after');
    } catch {
      request.status = 'error';
    }
    return request;
  }

  /**
   * Sends requests `concurrency` at a time until `accepted` requests have been accepted (counting
   * from now) or `stop()`; each sender pauses `pauseMs` between its requests so the load lasts
   * long enough to be interrupted, and backs off a little after a refusal or an error.
   */
  start(options: { accepted: number; concurrency: number; pauseMs: number }): void {
    if (this.running !== undefined) throw new Error('load already running');
    this.stopped = false;
    const quota = this.accepted.length + options.accepted;
    let acceptedCount = this.accepted.length;
    const sender = async () => {
      while (!this.stopped && acceptedCount < quota) {
        const request = await this.sendOne();
        const ok = typeof request.status === 'number' && request.status >= 200 && request.status < 300;
        if (ok) acceptedCount += 1;
        // Pacing of the load generator (a client's own rhythm and backoff), not synchronisation.
        const pause = ok ? options.pauseMs : Math.max(options.pauseMs, 100);
        if (pause > 0) await delay(pause);
      }
    };
    this.running = Promise.all(Array.from({ length: options.concurrency }, sender)).then(() => undefined);
  }

  /** Resolves once the current run has sent its requests. */
  async finished(timeoutMs = 120_000): Promise<void> {
    const running = this.running;
    if (running === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      running,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`load did not finish within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    this.running = undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.finished();
  }
}
