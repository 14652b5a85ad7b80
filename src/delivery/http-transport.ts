import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import type { HttpClient, HttpRequestSpec, HttpResponse } from '../connectors/connector.js';
import type { DestinationGuard } from './destination-guard.js';

const maxBodyExcerptBytes = 64 * 1024;

export interface HttpTransportOptions {
  readonly guard: DestinationGuard;
  readonly userAgent: string;
}

/** An error from the transport with a stable code the classifier reads. */
export class TransportFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A DNS lookup that refuses addresses the guard refuses, for agents that must honour it. */
export function guardedLookup(guard: DestinationGuard): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 4);
      try {
        for (const entry of addresses) guard.check(hostname, entry.address);
      } catch (refusal) {
        return callback(refusal as NodeJS.ErrnoException, '', 4);
      }
      if (lookupOptions.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 4);
      callback(null, first.address, first.family);
    });
  };
}

/**
 * The one HTTP client of the delivery core: keep-alive agents, an AbortSignal for the core's
 * timeout, the destination guard applied to every resolved address, and response bodies capped
 * to what classification and dead letters need. Built on node:http so nock intercepts it in tests.
 */
export function createHttpTransport(options: HttpTransportOptions): HttpClient & { close(): void } {
  const agentOptions = { keepAlive: true, maxSockets: 64, lookup: guardedLookup(options.guard) };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  return {
    request(spec: HttpRequestSpec, signal: AbortSignal): Promise<HttpResponse> {
      return new Promise<HttpResponse>((resolve, reject) => {
        let url: URL;
        try {
          url = new URL(spec.url);
        } catch {
          reject(new TransportFailure('INVALID_URL', `invalid URL ${spec.url}`));
          return;
        }
        const hostname = url.hostname.replace(/^\[|\]$/g, '');
        if (isIP(hostname) !== 0) {
          try {
            options.guard.check(hostname, hostname);
          } catch (refusal) {
            reject(new TransportFailure('DESTINATION_NOT_ALLOWED', (refusal as Error).message));
            return;
          }
        }
        const body = typeof spec.body === 'string' ? Buffer.from(spec.body) : spec.body;
        const isHttps = url.protocol === 'https:';
        const request = (isHttps ? https : http).request(url, {
          method: spec.method,
          agent: isHttps ? httpsAgent : httpAgent,
          headers: { 'user-agent': options.userAgent, ...spec.headers, 'content-length': String(body.byteLength) },
          signal,
        });
        request.on('response', (response) => {
          const chunks: Buffer[] = [];
          let kept = 0;
          response.on('data', (chunk: Buffer) => {
            if (kept < maxBodyExcerptBytes) {
              chunks.push(chunk);
              kept += chunk.length;
            }
          });
          response.on('end', () => {
            const headers: Record<string, string> = {};
            for (const [name, value] of Object.entries(response.headers)) {
              if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
            }
            resolve({
              status: response.statusCode ?? 0,
              headers,
              body: Buffer.concat(chunks).subarray(0, maxBodyExcerptBytes).toString('utf8'),
            });
          });
          response.on('error', (error) => reject(toTransportFailure(error, signal)));
        });
        request.on('error', (error) => reject(toTransportFailure(error, signal)));
        request.end(body);
      });
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

function toTransportFailure(error: unknown, signal: AbortSignal): TransportFailure {
  if (error instanceof TransportFailure) return error;
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
    return new TransportFailure(timedOut ? 'ETIMEDOUT' : 'ABORTED', timedOut ? 'request timed out' : 'request aborted');
  }
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'DESTINATION_NOT_ALLOWED' || (error as Error).name === 'DestinationNotAllowedError') {
    return new TransportFailure('DESTINATION_NOT_ALLOWED', message);
  }
  return new TransportFailure(typeof code === 'string' ? code : 'ERROR', message);
}
