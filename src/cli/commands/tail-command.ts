import { readEnv } from '../../app-config.js';
import { AppError } from '../../domain/errors.js';
import type { TailEvent } from '../../routing/live-tail.js';

export interface ServerSentEvent {
  readonly event: string;
  readonly data: string;
}

/** Splits a text/event-stream into events (`event:` and `data:` lines; comments and ids ignored). */
export async function* readServerSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { event, data: data.join('\n') };
    }
  }
}

export function formatTailLine(event: TailEvent): string {
  const { impression } = event;
  const where = event.outcome === 'tracked' ? (event.destinations.length > 0 ? `→ ${event.destinations.join(', ')}` : '→ (no destination matched)') : `(${event.reason ?? 'dropped'})`;
  return `${event.routedAt}  ${event.outcome.padEnd(7)}  ${impression.split}  ${impression.treatment}  key=${impression.key}  ${where}`;
}

/**
 * `flagstream tail ENV [--flag F] [--treatment T] [--key K] [--json]`: a client of the admin
 * API's live tail (FLAGSTREAM_ADMIN_URL, ADMIN_TOKEN), so the server's bound on slow viewers
 * applies to it as to any other viewer. One line per impression; Ctrl-C stops it.
 */
export async function tailCommand(environmentId: string, options: { flag?: string; treatment?: string; key?: string; json?: boolean }): Promise<void> {
  const env = readEnv();
  if (env.ADMIN_TOKEN === undefined) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'set ADMIN_TOKEN (the admin API token) so the tail can connect to the admin API', { field: 'ADMIN_TOKEN' });
  const base = (env.FLAGSTREAM_ADMIN_URL ?? `http://127.0.0.1:${env.PORT}`).replace(/\/+$/, '');
  const query = new URLSearchParams();
  for (const name of ['flag', 'treatment', 'key'] as const) if (options[name] !== undefined) query.set(name, options[name]);
  const url = `${base}/admin/v1/environments/${encodeURIComponent(environmentId)}/tail${query.size > 0 ? `?${query}` : ''}`;

  const stop = new AbortController();
  const interrupted = () => stop.abort();
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, accept: 'text/event-stream' }, signal: stop.signal });
    } catch (error) {
      if (stop.signal.aborted) return;
      throw new Error(`cannot reach the admin API at ${base} (set FLAGSTREAM_ADMIN_URL): ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`);
    }
    if (!response.ok || response.body === null) {
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
      } catch {
        // not JSON: the text says it
      }
      throw new Error(`${response.status}: ${message}`);
    }
    try {
      for await (const { event, data } of readServerSentEvents(response.body)) {
        if (event === 'ready') process.stderr.write(`watching ${environmentId}${query.size > 0 ? ` (${query.toString().replace(/&/g, ', ')})` : ''}; Ctrl-C to stop\n`);
        else if (event === 'impression') process.stdout.write(`${options.json ? data : formatTailLine(JSON.parse(data) as TailEvent)}\n`);
        else if (event === 'omitted') process.stderr.write(`(${(JSON.parse(data) as { message: string }).message})\n`);
        else if (event === 'end') {
          const { message } = JSON.parse(data) as { reason: string; message: string };
          process.stderr.write(`tail ended: ${message}\n`);
          process.exitCode = 1;
          return;
        }
      }
    } catch (error) {
      if (stop.signal.aborted) return;
      throw error;
    }
    if (!stop.signal.aborted) {
      process.stderr.write('tail ended: the server closed the stream\n');
      process.exitCode = 1;
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}
