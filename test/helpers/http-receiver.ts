import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitUntil } from './deferred.js';

export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** The body's bytes as received (for compressed bodies). */
  readonly raw: Buffer;
  readonly at: number;
}

export interface ScriptedResponse {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Never answer (until the receiver closes): a hanging destination. */
  readonly hang?: boolean;
}

/**
 * A real local HTTP server that records every request and answers from a script
 * (`respond`), by default 200. Tests wait on its events, never on sleeps.
 */
export class HttpReceiver {
  readonly requests: ReceivedRequest[] = [];
  private readonly events = new EventEmitter();
  private readonly server: http.Server;
  private readonly hanging = new Set<http.ServerResponse>();
  respond: (request: ReceivedRequest, index: number) => ScriptedResponse = () => ({ status: 200, body: 'ok' });

  private constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const request: ReceivedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: raw.toString('utf8'), raw, at: Date.now() };
        const index = this.requests.length;
        this.requests.push(request);
        const answer = this.respond(request, index);
        if (answer.hang) {
          this.hanging.add(res);
        } else {
          res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
          res.end(answer.body ?? '');
        }
        this.events.emit('request', request);
      });
    });
  }

  static async start(): Promise<HttpReceiver> {
    const receiver = new HttpReceiver();
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Impressions received so far (bodies are JSON arrays), from answered-2xx requests only if `onlyAccepted`. */
  impressions(): Record<string, unknown>[] {
    return this.requests.flatMap((r) => (r.body.startsWith('[') ? (JSON.parse(r.body) as Record<string, unknown>[]) : []));
  }

  waitForRequests(count: number, timeoutMs?: number): Promise<void> {
    return waitUntil(() => this.requests.length >= count, (onChange) => this.subscribe(onChange), timeoutMs, `${count} request(s)`);
  }

  waitFor(condition: () => boolean, timeoutMs?: number, what?: string): Promise<void> {
    return waitUntil(condition, (onChange) => this.subscribe(onChange), timeoutMs, what);
  }

  private subscribe(onChange: () => void): () => void {
    this.events.on('request', onChange);
    return () => this.events.off('request', onChange);
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
