import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { waitUntil } from './deferred.js';

/**
 * How the receiver answers: `ok` 200; `5xx` 500; `hang` never answers; `reset` destroys the
 * socket; `slow` answers 200 after `slowMs`. Switchable at run time.
 */
export type ReceiverMode = 'ok' | '5xx' | 'hang' | 'reset' | 'slow';

interface ReceivedImpression {
  readonly id: string;
  readonly key: string;
}

/**
 * A real webhook receiver that verifies every Standard Webhooks signature and counts what it
 * acknowledged: deliveries (2xx answers on a live connection) and, per impression id, how many
 * times it arrived. An answer that reaches a closed connection (the sender gave up or died) is
 * not counted: the sender will send it again.
 */
export class CountingReceiver {
  mode: ReceiverMode = 'ok';
  slowMs = 1000;
  /** Requests received, answered or not, per mode they met. */
  readonly requestsByMode: Record<ReceiverMode, number> = { ok: 0, '5xx': 0, hang: 0, reset: 0, slow: 0 };
  /** Requests being held (hang, slow) right now. */
  inFlight = 0;
  /** Requests answered 2xx on a live connection. */
  deliveries = 0;
  invalidSignatures = 0;
  /** Impression id → times acknowledged. */
  readonly counts = new Map<string, number>();
  /** Impression key (unique per impression in the fault suite) → its id. */
  readonly idOfKey = new Map<string, string>();
  /** Keys that arrived with two different ids: ids must be stable across retries. */
  readonly idConflicts: string[] = [];

  private readonly events = new EventEmitter();
  private readonly server: http.Server;
  private readonly webhook: Webhook;
  /** Requests held (hang, slow) → their `webhook-id`. */
  private readonly held = new Map<http.ServerResponse, string>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    readonly name: string,
    secret: string,
  ) {
    this.webhook = new Webhook(secret);
    this.events.setMaxListeners(0);
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.answer(req, res, Buffer.concat(chunks).toString('utf8')));
      req.on('error', () => undefined);
    });
  }

  static async start(name: string, secret: string): Promise<CountingReceiver> {
    const receiver = new CountingReceiver(name, secret);
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/${this.name}`;
  }

  get requests(): number {
    return Object.values(this.requestsByMode).reduce((a, b) => a + b, 0);
  }

  get uniqueIds(): number {
    return this.counts.size;
  }

  /** Acknowledged arrivals beyond the first, over all ids. */
  get duplicates(): number {
    let extra = 0;
    for (const count of this.counts.values()) extra += count - 1;
    return extra;
  }

  get maxArrivals(): number {
    let max = 0;
    for (const count of this.counts.values()) max = Math.max(max, count);
    return max;
  }

  /** `webhook-id`s of the requests held right now: the same id means the same batch sent again. */
  heldMessageIds(): string[] {
    return [...this.held.values()];
  }

  /** Switches the answer; requests held by `hang` are cut off, as a restarting server would. */
  setMode(mode: ReceiverMode, slowMs?: number): void {
    this.mode = mode;
    if (slowMs !== undefined) this.slowMs = slowMs;
    if (mode !== 'hang') this.releaseHeld();
  }

  waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return waitUntil(condition, (onChange) => this.subscribe(onChange), timeoutMs, `${this.name}: ${what}`);
  }

  private subscribe(onChange: () => void): () => void {
    this.events.on('change', onChange);
    return () => this.events.off('change', onChange);
  }

  private changed(): void {
    this.events.emit('change');
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const mode = this.mode;
    this.requestsByMode[mode] += 1;
    let impressions: ReceivedImpression[];
    try {
      this.webhook.verify(body, req.headers as Record<string, string>);
      impressions = JSON.parse(body) as ReceivedImpression[];
    } catch {
      this.invalidSignatures += 1;
      res.writeHead(401).end();
      this.changed();
      return;
    }
    switch (mode) {
      case 'ok':
        this.acknowledge(res, impressions);
        break;
      case '5xx':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('receiver down');
        break;
      case 'reset':
        req.socket.destroy();
        break;
      case 'hang':
        this.hold(res, String(req.headers['webhook-id']));
        break;
      case 'slow': {
        this.hold(res, String(req.headers['webhook-id']));
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (this.unhold(res)) this.acknowledge(res, impressions);
        }, this.slowMs);
        this.timers.add(timer);
        break;
      }
    }
    this.changed();
  }

  private hold(res: http.ServerResponse, messageId: string): void {
    this.held.set(res, messageId);
    this.inFlight += 1;
    res.once('close', () => {
      if (this.unhold(res)) this.changed();
    });
  }

  private unhold(res: http.ServerResponse): boolean {
    if (!this.held.delete(res)) return false;
    this.inFlight -= 1;
    return true;
  }

  private acknowledge(res: http.ServerResponse, impressions: readonly ReceivedImpression[]): void {
    // The sender is gone (timed out, killed): it never learns of this answer, so it does not count.
    if (res.destroyed || res.socket === null || res.socket.destroyed) return;
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    this.deliveries += 1;
    for (const { id, key } of impressions) {
      this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
      const known = this.idOfKey.get(key);
      if (known === undefined) this.idOfKey.set(key, id);
      else if (known !== id) this.idConflicts.push(key);
    }
    this.changed();
  }

  private releaseHeld(): void {
    for (const res of [...this.held.keys()]) {
      this.unhold(res);
      res.socket?.destroy();
    }
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.releaseHeld();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
