import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpClient, HttpRequestSpec, HttpResponse } from '../connectors/connector.js';
import { createScrubber, credentialsInHeader, isCredentialHeader, type Scrubber } from '../observability/redact.js';
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

/** A DNS lookup that refuses a name if any address it resolves to is refused (for every agent that must honour the guard). */
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
 * timeout, the destination guard applied to every connection, and response bodies capped
 * to what classification and dead letters need. Built on node:http so nock intercepts it in tests.
 *
 * The guard runs on every new connection, after DNS: the agents' lookup refuses a name if any
 * address it resolves to is refused (so nothing is connected to), a literal IP is judged before
 * a request starts (Node does not call lookup for one), and each socket's actual peer is checked
 * again on connect, before a byte of the request is written. Pooled keep-alive sockets are
 * reused only for the host and port they were checked for. Redirects are never followed
 * (node:http does not): a 3xx is the destination's answer, classified like any other.
 *
 * Every credential the request carries in its headers (Authorization, API keys, tokens, in raw,
 * base64 and URL-encoded forms) is scrubbed from the answer and from error messages before they
 * leave the transport, so a destination that echoes the request cannot put them in a dead
 * letter or a log line.
 */
export function createHttpTransport(options: HttpTransportOptions): HttpClient & { close(): void } {
  /** The last word on every new socket: its real peer, whatever resolved it. */
  const guardSocket = (socket: Duplex | null | undefined, host: string | null | undefined): void => {
    if (!(socket instanceof Socket)) return;
    socket.once('connect', () => {
      try {
        options.guard.check(host ?? '', socket.remoteAddress ?? '');
      } catch (refusal) {
        // Paused first: net would otherwise start reading the destroyed socket and report EINVAL instead.
        socket.pause();
        socket.destroy(refusal as Error);
      }
    });
  };
  const agentOptions = { keepAlive: true, maxSockets: 64, lookup: guardedLookup(options.guard) };
  class GuardedHttpAgent extends http.Agent {
    override createConnection(connectOptions: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
      const socket = super.createConnection(connectOptions, callback);
      guardSocket(socket, connectOptions.hostname ?? connectOptions.host);
      return socket;
    }
  }
  class GuardedHttpsAgent extends https.Agent {
    override createConnection(connectOptions: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
      const socket = super.createConnection(connectOptions, callback);
      guardSocket(socket, connectOptions.hostname ?? connectOptions.host);
      return socket;
    }
  }
  const httpAgent = new GuardedHttpAgent(agentOptions);
  const httpsAgent = new GuardedHttpsAgent(agentOptions);

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
        const scrub = requestScrubber(spec);
        const fail = (error: unknown) => reject(scrubFailure(toTransportFailure(error, signal), scrub));
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
              if (value !== undefined) headers[name] = scrub(Array.isArray(value) ? value.join(', ') : value);
            }
            resolve({
              status: response.statusCode ?? 0,
              headers,
              body: scrub(Buffer.concat(chunks).subarray(0, maxBodyExcerptBytes).toString('utf8')),
            });
          });
          response.on('error', fail);
        });
        request.on('error', fail);
        request.end(body);
      });
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** Scrubs the credentials this request's own headers carry. */
function requestScrubber(spec: HttpRequestSpec): Scrubber {
  const credentials = Object.entries(spec.headers).flatMap(([name, value]) => (isCredentialHeader(name) ? credentialsInHeader(value) : []));
  return createScrubber(credentials);
}

function scrubFailure(failure: TransportFailure, scrub: Scrubber): TransportFailure {
  const message = scrub(failure.message);
  return message === failure.message ? failure : new TransportFailure(failure.code, message);
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
