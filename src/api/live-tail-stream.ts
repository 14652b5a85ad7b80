import type { ServerResponse } from 'node:http';
import { matchesTail, type TailFilter, type TailMessage } from '../routing/live-tail.js';
import type { TailSubscriptions, TailWatch } from '../stores/live-tail-store.js';

export interface LiveTailLimits {
  /** Bytes a viewer may leave unread before it is cut off (default 1 MiB). */
  readonly maxBufferedBytes: number;
  /** After the final event, how long an unread stream is kept before its socket is destroyed. */
  readonly closeGraceMs: number;
  /** A comment line this often keeps proxies from closing an idle stream. */
  readonly keepAliveMs: number;
}

export const defaultLiveTailLimits: LiveTailLimits = { maxBufferedBytes: 1024 * 1024, closeGraceMs: 10_000, keepAliveMs: 15_000 };

export type EndReason = 'slow_viewer' | 'shutdown' | 'unavailable';

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export interface LiveTailStream {
  /** Ends the stream with a final `end` event saying why. */
  end(reason: EndReason, message: string): void;
  /** Resolves once the viewer is subscribed (or the stream has ended). */
  readonly started: Promise<void>;
}

/**
 * One viewer's server-sent events stream. Its only buffer is the response's own: when more than
 * `maxBufferedBytes` sit unread, the viewer is cut off with a final `end` event (reason
 * `slow_viewer`) instead of holding memory or anyone else back. Events: `ready` (subscribed),
 * `impression` (one per impression), `omitted` (impressions left out of a capped message),
 * `end` (last).
 */
export function streamLiveTail(deps: {
  subscriptions: TailSubscriptions;
  environmentId: string;
  filter: TailFilter;
  response: ServerResponse;
  headers: Record<string, string>;
  limits: LiveTailLimits;
  onEnd: (stream: LiveTailStream) => void;
}): LiveTailStream {
  const { response, limits, filter } = deps;
  let ended = false;
  let watch: TailWatch | undefined;
  let keepAlive: NodeJS.Timeout | undefined;

  const finish = () => {
    if (keepAlive !== undefined) clearInterval(keepAlive);
    void watch?.stop();
    deps.onEnd(stream);
  };
  const stream: { -readonly [K in keyof LiveTailStream]: LiveTailStream[K] } = {
    started: Promise.resolve(),
    end(reason, message) {
      if (ended) return;
      ended = true;
      finish();
      response.end(sse('end', { reason, message }));
      // A viewer that reads nothing would keep the socket and its buffer forever.
      const grace = setTimeout(() => response.destroy(), limits.closeGraceMs);
      grace.unref();
      response.once('close', () => clearTimeout(grace));
    },
  };
  const write = (chunk: string): boolean => {
    if (ended) return false;
    if (response.writableLength > limits.maxBufferedBytes) {
      stream.end('slow_viewer', `the viewer read too slowly: more than ${limits.maxBufferedBytes} bytes were waiting; reconnect to continue`);
      return false;
    }
    response.write(chunk);
    return true;
  };
  response.once('close', () => {
    if (ended) return;
    ended = true;
    finish();
  });

  response.writeHead(200, { ...deps.headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  const onMessage = (message: TailMessage) => {
    for (const event of message.events) {
      if (matchesTail(filter, event.impression) && !write(sse('impression', event))) return;
    }
    if (message.omitted > 0) write(sse('omitted', { count: message.omitted, message: `${message.omitted} impression(s) of one routing job left out (a message carries at most 1000 impressions or 1 MiB)` }));
  };
  stream.started = (async () => {
    try {
      watch = await deps.subscriptions.watch(deps.environmentId, filter, onMessage);
    } catch {
      stream.end('unavailable', 'the live tail could not subscribe (Redis unreachable); retry later');
      return;
    }
    if (ended) {
      // The viewer left (or the server closed) while we subscribed.
      void watch.stop();
      return;
    }
    write(sse('ready', { environmentId: deps.environmentId, filter, maxBufferedBytes: limits.maxBufferedBytes }));
    keepAlive = setInterval(() => write(': keep-alive\n\n'), limits.keepAliveMs);
    keepAlive.unref();
  })();
  return stream;
}
