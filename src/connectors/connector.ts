import type { z } from 'zod';
import type { Impression } from '../domain/impression.js';

/**
 * The connector interface: what a kind of destination *is* (settings, limits) and the pure
 * functions that turn impressions into requests and responses into outcomes. Batching, retries,
 * dead letters, rate limits and metrics live in src/delivery and never in a connector.
 */

export interface BatchLimits {
  /** Most impressions one request may carry (vendor limit; cite it where you set it). */
  readonly maxItemsPerRequest: number;
  /** Most encoded body bytes one request may carry; larger requests are split by the core. */
  readonly maxBytesPerRequest: number;
  /** How long the core may hold impressions to fill a batch. */
  readonly maxBatchWaitMs: number;
  /** Default requests in flight per destination per process (the destination may lower it). */
  readonly maxConcurrentRequests: number;
  /** Client-side pacing, only where the vendor documents a rate. */
  readonly requestsPerSecond?: number;
  /** Timeout of one request, where the connector's settings choose one; else the destination's. */
  readonly requestTimeoutMs?: number;
}

/** Why an impression went to dead letters (or, for `skipped`, was deliberately not sent). */
export type RejectCode =
  | 'invalid_payload'
  | 'unsupported_by_destination'
  | 'payload_too_large'
  | 'destination_auth'
  | 'destination_not_found'
  | 'destination_not_allowed'
  | 'destination_deleted'
  | 'retries_exhausted'
  | 'max_age_exceeded'
  | 'internal_error';

export interface EncodedRequest<Req> {
  /** Ids of the impressions this request carries. */
  readonly itemIds: readonly string[];
  readonly request: Req;
  /** Encoded size, for the byte limit and metrics. */
  readonly bytes: number;
}

export interface EncodeResult<Req> {
  /**
   * An impression is normally in one request. Where the vendor needs several calls for it (Heap's
   * event and user properties), it may be in several: it is delivered only when all of them are.
   */
  readonly requests: readonly EncodedRequest<Req>[];
  /** Impressions the destination can never accept: dead-lettered at once. */
  readonly rejected: readonly { readonly itemId: string; readonly code: RejectCode; readonly reason: string }[];
  /** Impressions this destination deliberately ignores (e.g. unmapped traffic type): counted, not dead-lettered. */
  readonly skipped: readonly { readonly itemId: string; readonly reason: string }[];
}

export type ItemOutcome =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'retry'; readonly reason: string; readonly status?: number; readonly retryAfterMs?: number }
  | { readonly kind: 'throttled'; readonly reason: string; readonly status?: number; readonly retryAfterMs?: number }
  | { readonly kind: 'rejected'; readonly code: RejectCode; readonly reason: string; readonly status?: number };

export type DeliveryOutcome =
  | ItemOutcome
  /** The request was too big for the destination: the core splits it and re-sends the halves. */
  | { readonly kind: 'too-large'; readonly reason: string }
  /** Per-item results; items absent from the map count as delivered. */
  | { readonly kind: 'partial'; readonly byItem: ReadonlyMap<string, ItemOutcome>; readonly reason: string; readonly status?: number };

export type SendResult<Res> = { readonly ok: true; readonly response: Res } | { readonly ok: false; readonly error: TransportError };

export interface TransportError {
  /** `ETIMEDOUT`, `ECONNRESET`, `ECONNREFUSED`, `ENOTFOUND`, `DESTINATION_NOT_ALLOWED`, `ABORTED`, … */
  readonly code: string;
  readonly message: string;
}

export interface HttpRequestSpec {
  readonly method: 'POST' | 'PUT';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | Uint8Array;
}

export interface HttpResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The start of the body (capped), enough to classify and to quote in a dead letter. */
  readonly body: string;
}

export interface HttpClient {
  request(spec: HttpRequestSpec, signal: AbortSignal): Promise<HttpResponse>;
}

/** What the platform hands a connector's createClient. */
export interface ConnectorPlatform {
  /** The core's HTTP transport: keep-alive, timeouts, and the private-address guard. */
  readonly http: HttpClient;
}

export interface EncodeContext {
  /** Current time, injected so encoders stay pure and tests deterministic. */
  readonly now: number;
  readonly destinationId: string;
}

export interface Connector<Settings = unknown, Req = HttpRequestSpec, Res = HttpResponse, Client = HttpClient> {
  /** Stable id used in configuration (`type:`), metrics and dead letters. */
  readonly type: string;
  readonly displayName: string;
  readonly description: string;
  readonly settingsSchema: z.ZodType<Settings>;
  /** Top-level settings keys that hold secrets: encrypted at rest, redacted on read. */
  readonly secretSettings: readonly string[];
  /** Parses with settingsSchema; used by the docs, the contract tests and `flagstream connectors`. */
  readonly exampleSettings: Readonly<Record<string, unknown>>;
  /** Region presets, name → base URL, where the vendor has them. */
  readonly regions?: Readonly<Record<string, string>>;
  limits(settings: Settings): BatchLimits;
  createClient(settings: Settings, platform: ConnectorPlatform): Client;
  /** Pure: no I/O, no clock but context.now. May split into several requests. */
  encode(items: readonly Impression[], settings: Settings, context: EncodeContext): EncodeResult<Req>;
  /**
   * Optional, for connectors whose requests take long to build (S3: 50 000 rows serialised and
   * compressed): the same result as `encode`, computed off the event loop (a worker thread). The
   * delivery core awaits this instead of `encode` when present; a rejection counts as `encode`
   * throwing. `encode` stays the pure reference (tests, `destinations test`).
   */
  encodeOffLoop?(items: readonly Impression[], settings: Settings, context: EncodeContext): Promise<EncodeResult<Req>>;
  /**
   * Optional, for connectors whose body is the impressions themselves as a JSON array (the
   * webhook): the same result as `encode`, given that body already written. `body` is byte for
   * byte `Buffer.from(JSON.stringify(items))`; the delivery core writes it straight from the
   * stored rows the items were read from (`ImpressionJsonWriter`) and calls this instead of
   * `encode` when it can. Vendor connectors that reshape each impression leave it out.
   */
  encodeJsonArray?(items: readonly Impression[], body: Buffer, settings: Settings, context: EncodeContext): EncodeResult<Req>;
  /** The only I/O. No retries, timers or logging here: the core owns those. */
  send(client: Client, request: Req, signal: AbortSignal): Promise<Res>;
  /** Pure: what the destination's answer means. */
  classify(result: SendResult<Res>, sent: EncodedRequest<Req>): DeliveryOutcome;
  /**
   * For `destinations test`, where the vendor has a validation-only endpoint: the request to send
   * instead of `request`, which stores nothing. Its answer goes through `classify` as usual.
   */
  toTestRequest?(request: EncodedRequest<Req>, settings: Settings): EncodedRequest<Req>;
  /** Release sockets or SDK resources when the destination is reconfigured or removed. */
  closeClient?(client: Client): Promise<void>;
}

/**
 * A connector whose settings have been parsed already; the registry stores these.
 * Method syntax above keeps parameters bivariant, so a Connector<WebhookSettings> is assignable.
 */
// `any` because the registry holds connectors of many settings and request types; each entry
// parses its own settings with its schema at the boundary, so nothing untyped flows inside it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyConnector = Connector<any, any, any, any>;
