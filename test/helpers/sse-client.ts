import { EventEmitter } from 'node:events';
import http from 'node:http';
import { waitUntil } from './deferred.js';

export interface ReceivedEvent {
  readonly event: string;
  readonly data: unknown;
}

/**
 * A real server-sent events client over node:http that can stop reading (`pause`) like a
 * slow viewer does; tests wait on its events, never on sleeps.
 */
export class SseClient {
  readonly events: ReceivedEvent[] = [];
  status = 0;
  body = '';
  ended = false;
  private readonly emitter = new EventEmitter();
  private response: http.IncomingMessage | undefined;
  private readonly request: http.ClientRequest;
  private buffered = '';

  constructor(url: string, headers: Record<string, string>) {
    this.request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      this.response = response;
      this.status = response.statusCode ?? 0;
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (this.status !== 200) {
          this.body += chunk;
          return;
        }
        this.buffered += chunk;
        let end: number;
        while ((end = this.buffered.indexOf('\n\n')) >= 0) {
          const block = this.buffered.slice(0, end);
          this.buffered = this.buffered.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined) this.events.push({ event, data: JSON.parse(data) as unknown });
        }
        this.emitter.emit('change');
      });
      response.on('end', () => {
        this.ended = true;
        this.emitter.emit('change');
      });
      response.on('error', () => undefined);
      this.emitter.emit('change');
    });
    this.request.on('error', () => {
      this.ended = true;
      this.emitter.emit('change');
    });
  }

  of(event: string): unknown[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    return waitUntil(condition, (onChange) => {
      this.emitter.on('change', onChange);
      return () => this.emitter.off('change', onChange);
    }, timeoutMs, what);
  }

  ready(): Promise<void> {
    return this.waitFor(() => this.status !== 0 && (this.status !== 200 || this.of('ready').length > 0 || this.ended), 'the stream to be ready');
  }

  /** Stops reading: what the server sends piles up in the socket buffers. */
  pause(): void {
    this.response?.pause();
  }

  resume(): void {
    this.response?.resume();
  }

  close(): void {
    this.request.destroy();
  }
}
