import pRetry, { AbortError } from 'p-retry';
import type { AnyConnector, BatchLimits, DeliveryOutcome, EncodedRequest, ItemOutcome, RejectCode, SendResult } from '../connectors/connector.js';
import type { Impression } from '../domain/impression.js';
import { createScrubber, destinationSecrets, scrubDeep } from '../observability/redact.js';
import { TransportFailure } from './http-transport.js';

export interface DeliveryTarget {
  readonly destinationId: string;
  readonly connector: AnyConnector;
  readonly settings: unknown;
  readonly limits: BatchLimits;
  readonly client: unknown;
  readonly timeoutMs: number;
  readonly maxConcurrentRequests: number;
}

export interface RejectedItem {
  readonly item: Impression;
  readonly code: RejectCode;
  readonly reason: string;
  readonly status?: number | undefined;
}

/** What became of each impression of a batch after one attempt. */
export interface BatchSettlement {
  readonly delivered: number;
  /** The delivered impressions themselves (for the latency metric). */
  readonly deliveredItems: Impression[];
  readonly skipped: number;
  readonly rejected: RejectedItem[];
  /** Still to deliver: retried by the job with backoff. */
  readonly pending: Impression[];
  /** Longest Retry-After among pending items, if the destination gave one. */
  readonly retryAfterMs: number | undefined;
  /** Whether the destination throttled us (429): waits do not consume an attempt. */
  readonly throttled: boolean;
  /** The last failure, for dead letters, health and logs. */
  readonly lastFailure: { readonly reason: string; readonly status?: number | undefined } | undefined;
  readonly requests: number;
}

export interface DeliverBatchOptions {
  readonly now: () => number;
  /** Aborts everything in flight (shutdown). */
  readonly signal?: AbortSignal;
  /** Quick in-process retries of transient failures within one attempt. */
  readonly quickRetries?: number;
  readonly quickRetryMinDelayMs?: number;
  readonly onRequest?: (outcome: DeliveryOutcome['kind'], seconds: number, items: number) => void;
  /**
   * Where the items can be written as JSON without JSON.stringify (read from stored rows): their
   * JSON array, `Buffer.from(JSON.stringify(items))` byte for byte. Used for connectors that
   * declare `encodeJsonArray`.
   */
  readonly jsonArray?: (items: readonly Impression[]) => Buffer;
}

class RetryableOutcome extends Error {
  constructor(readonly outcome: DeliveryOutcome) {
    super('retryable outcome');
  }
}

/**
 * One attempt at a batch for one destination, read top to bottom: chunk to the item limit,
 * encode, split what is over the byte limit, send with bounded concurrency under a timeout
 * (transient failures get a few quick retries), classify, and settle every impression.
 * Nothing here retries across attempts, sleeps long or writes dead letters: the caller does.
 */
export async function deliverBatch(items: readonly Impression[], target: DeliveryTarget, options: DeliverBatchOptions): Promise<BatchSettlement> {
  const byId = new Map(items.map((item) => [item.id, item]));
  const rejected: RejectedItem[] = [];
  const pending: Impression[] = [];
  const deliveredItems: Impression[] = [];
  let delivered = 0;
  let skipped = 0;
  let retryAfterMs: number | undefined;
  let throttled = false;
  let lastFailure: BatchSettlement['lastFailure'];
  let requests = 0;
  // What a destination answers may quote what it was sent: its secrets never get further than here.
  const scrub = createScrubber(destinationSecrets(target.connector.secretSettings, target.settings));

  // An impression may travel in several requests (a vendor that needs two calls for it): it is
  // settled once, at the end, by its worst outcome, so it is never counted twice.
  const outcomes = new Map<string, ItemOutcome>();
  const settleItem = (id: string, outcome: ItemOutcome): void => {
    if (!byId.has(id)) return;
    const previous = outcomes.get(id);
    if (previous === undefined || severity[outcome.kind] > severity[previous.kind]) outcomes.set(id, outcome);
    if (outcome.kind === 'delivered') return;
    lastFailure = { reason: outcome.reason, status: outcome.status };
    if (outcome.kind === 'rejected') return;
    if (outcome.kind === 'throttled') throttled = true;
    if (outcome.retryAfterMs !== undefined) retryAfterMs = Math.max(retryAfterMs ?? 0, outcome.retryAfterMs);
  };

  const encode = async (chunk: readonly Impression[]): Promise<EncodedRequest<unknown>[]> => {
    if (chunk.length === 0) return [];
    let result;
    try {
      const context = { now: options.now(), destinationId: target.destinationId };
      const { connector } = target;
      if (connector.encodeJsonArray !== undefined && options.jsonArray !== undefined) {
        // The body written from the stored rows: no impression goes through JSON.stringify.
        result = connector.encodeJsonArray(chunk, options.jsonArray(chunk), target.settings, context);
      } else {
        // A connector with heavy bodies builds them off the event loop; its rejection is a throw like encode's.
        result = await (connector.encodeOffLoop?.(chunk, target.settings, context) ?? connector.encode(chunk, target.settings, context));
      }
    } catch (error) {
      // Encoding is pure, so what throws once throws on every retry: halve the chunk until the
      // items the connector cannot encode are alone, reject those, and send their neighbours now.
      if (chunk.length > 1) {
        const half = Math.ceil(chunk.length / 2);
        return [...(await encode(chunk.slice(0, half))), ...(await encode(chunk.slice(half)))];
      }
      const reason = scrub(`the connector cannot encode this impression: ${error instanceof Error ? error.message : String(error)}`);
      for (const item of chunk) settleItem(item.id, { kind: 'rejected', code: 'invalid_payload', reason });
      return [];
    }
    for (const r of result.rejected) settleItem(r.itemId, { kind: 'rejected', code: r.code, reason: r.reason });
    skipped += result.skipped.length;
    let fitting: EncodedRequest<unknown>[] = [];
    for (const request of result.requests) {
      if (request.bytes <= target.limits.maxBytesPerRequest) fitting.push(request);
      else fitting = fitting.concat(await splitOversized(request.itemIds, `request of ${request.bytes} bytes is over the limit of ${target.limits.maxBytesPerRequest}`));
    }
    return fitting;
  };

  const splitOversized = async (itemIds: readonly string[], reason: string): Promise<EncodedRequest<unknown>[]> => {
    if (itemIds.length <= 1) {
      for (const id of itemIds) settleItem(id, { kind: 'rejected', code: 'payload_too_large', reason });
      return [];
    }
    const half = Math.ceil(itemIds.length / 2);
    const subset = (ids: readonly string[]) => ids.map((id) => byId.get(id)).filter((item): item is Impression => item !== undefined);
    return [...(await encode(subset(itemIds.slice(0, half)))), ...(await encode(subset(itemIds.slice(half))))];
  };

  const sendOnce = async (request: EncodedRequest<unknown>): Promise<DeliveryOutcome> => {
    const started = performance.now();
    const timeout = AbortSignal.timeout(target.timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
    let result: SendResult<unknown>;
    try {
      result = { ok: true, response: await target.connector.send(target.client, request.request, signal) };
    } catch (error) {
      const failure = error instanceof TransportFailure ? error : toFailure(error, timeout);
      result = { ok: false, error: { code: failure.code, message: failure.message } };
    }
    requests += 1;
    result = scrubDeep(result, scrub);
    let outcome: DeliveryOutcome;
    try {
      outcome = scrubDeep(target.connector.classify(result, request), scrub);
    } catch (error) {
      outcome = { kind: 'retry', reason: scrub(`classify failed: ${error instanceof Error ? error.message : String(error)}`) };
    }
    options.onRequest?.(outcome.kind, (performance.now() - started) / 1000, request.itemIds.length);
    return outcome;
  };

  const sendWithQuickRetries = async (request: EncodedRequest<unknown>): Promise<DeliveryOutcome> => {
    try {
      return await pRetry(
        async () => {
          const outcome = await sendOnce(request);
          // Only short blips are retried here; an explicit Retry-After goes back to the queue.
          if (outcome.kind === 'retry' && outcome.retryAfterMs === undefined) throw new RetryableOutcome(outcome);
          return outcome;
        },
        {
          retries: options.quickRetries ?? 2,
          minTimeout: options.quickRetryMinDelayMs ?? 200,
          factor: 3,
          randomize: true,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
          shouldRetry: ({ error }) => error instanceof RetryableOutcome && options.signal?.aborted !== true,
        },
      );
    } catch (error) {
      if (error instanceof RetryableOutcome) return error.outcome;
      if (error instanceof AbortError) return { kind: 'retry', reason: 'aborted' };
      return { kind: 'retry', reason: error instanceof Error ? error.message : String(error) };
    }
  };

  const deliverRequest = async (request: EncodedRequest<unknown>): Promise<void> => {
    const outcome = await sendWithQuickRetries(request);
    switch (outcome.kind) {
      case 'too-large': {
        const halves = await splitOversized(request.itemIds, outcome.reason);
        await runPool(halves, target.maxConcurrentRequests, deliverRequest);
        return;
      }
      case 'partial':
        if (outcome.status !== undefined || outcome.reason !== '') lastFailure = { reason: outcome.reason, status: outcome.status };
        for (const id of request.itemIds) settleItem(id, outcome.byItem.get(id) ?? { kind: 'delivered' });
        return;
      default:
        for (const id of request.itemIds) settleItem(id, outcome);
    }
  };

  let requestsToSend: EncodedRequest<unknown>[] = [];
  const chunkSize = Math.max(1, target.limits.maxItemsPerRequest);
  // concat, not push(...): a chunk may encode into as many requests as it has items.
  for (let start = 0; start < items.length; start += chunkSize) requestsToSend = requestsToSend.concat(await encode(items.slice(start, start + chunkSize)));
  await runPool(requestsToSend, target.maxConcurrentRequests, deliverRequest);

  for (const [id, outcome] of outcomes) {
    const item = byId.get(id) as Impression;
    if (outcome.kind === 'delivered') {
      delivered += 1;
      deliveredItems.push(item);
    } else if (outcome.kind === 'rejected') rejected.push({ item, code: outcome.code, reason: outcome.reason, status: outcome.status });
    else pending.push(item);
  }
  return { delivered, deliveredItems, skipped, rejected, pending, retryAfterMs, throttled, lastFailure, requests };
}

const severity: Readonly<Record<ItemOutcome['kind'], number>> = { delivered: 0, retry: 1, throttled: 2, rejected: 3 };

function toFailure(error: unknown, timeout: AbortSignal): TransportFailure {
  if (timeout.aborted) return new TransportFailure('ETIMEDOUT', 'request timed out');
  const code = (error as { code?: unknown } | null)?.code;
  return new TransportFailure(typeof code === 'string' ? code : 'ERROR', error instanceof Error ? error.message : String(error));
}

async function runPool<T>(tasks: readonly T[], concurrency: number, run: (task: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(Math.max(1, concurrency), tasks.length) }, async () => {
    while (next < tasks.length) {
      const task = tasks[next] as T;
      next += 1;
      await run(task);
    }
  });
  await Promise.all(lanes);
}
