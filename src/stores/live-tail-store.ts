import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { TailFilter, TailMessage } from '../routing/live-tail.js';
import { duplicateConnection } from '../runtime/redis-client.js';
import type { RedisKeys } from './redis-keys.js';

/**
 * The live tail over Redis. Viewers register (with their filter) in one sorted set scored by
 * expiry and subscribe to their environment's channel; routing reads that set at most once per
 * `checkIntervalMs` per process and publishes one message per routing job, only for watched
 * environments, carrying only what some viewer's filter wants. Nobody watching costs one
 * ZRANGEBYSCORE a second per worker process and nothing per impression.
 */
interface ViewerRecord extends TailFilter {
  readonly id: string;
  readonly environmentId: string;
}

/** At most this many viewers are considered (registrations beyond it still see what others asked for). */
const maxViewers = 1000;

export interface TailPublisher {
  /** Filters of the environment's viewers (cached); empty when nobody watches or Redis cannot tell. */
  viewers(environmentId: string): Promise<readonly TailFilter[]>;
  /** Publishes one routing job's message (a serialised TailMessage). */
  publish(environmentId: string, message: string): Promise<void>;
}

export function createTailPublisher(deps: { redis: Redis; keys: RedisKeys; clock: () => number; checkIntervalMs?: number }): TailPublisher {
  const { redis, keys, clock } = deps;
  const interval = deps.checkIntervalMs ?? 1000;
  let cache: { at: number; byEnvironment: Map<string, TailFilter[]> } | undefined;
  let refreshing: Promise<Map<string, TailFilter[]>> | undefined;

  const refresh = async (): Promise<Map<string, TailFilter[]>> => {
    const now = clock();
    const byEnvironment = new Map<string, TailFilter[]>();
    try {
      const members = await redis.zrangebyscore(keys.liveTailViewers, now, '+inf', 'LIMIT', 0, maxViewers);
      for (const member of members) {
        const viewer = parseViewer(member);
        if (viewer === undefined) continue;
        const filters = byEnvironment.get(viewer.environmentId) ?? [];
        filters.push({ flag: viewer.flag, treatment: viewer.treatment, key: viewer.key });
        byEnvironment.set(viewer.environmentId, filters);
      }
    } catch {
      // Redis trouble: nobody is shown anything for a second; routing itself goes on.
    }
    cache = { at: now, byEnvironment };
    return byEnvironment;
  };

  return {
    async viewers(environmentId) {
      if (cache !== undefined && clock() - cache.at < interval) return cache.byEnvironment.get(environmentId) ?? [];
      refreshing ??= refresh().finally(() => (refreshing = undefined));
      return (await refreshing).get(environmentId) ?? [];
    },
    async publish(environmentId, message) {
      await redis.publish(keys.liveTailChannel(environmentId), message);
    },
  };
}

function parseViewer(member: string): ViewerRecord | undefined {
  try {
    const parsed = JSON.parse(member) as Partial<ViewerRecord>;
    if (typeof parsed.id !== 'string' || typeof parsed.environmentId !== 'string') return undefined;
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    return { id: parsed.id, environmentId: parsed.environmentId, flag: text(parsed.flag), treatment: text(parsed.treatment), key: text(parsed.key) };
  } catch {
    return undefined;
  }
}

export interface TailWatch {
  stop(): Promise<void>;
}

export interface TailSubscriptions {
  /** Registers a viewer and subscribes to its environment's channel; resolves once both are in place. */
  watch(environmentId: string, filter: TailFilter, onMessage: (message: TailMessage) => void): Promise<TailWatch>;
  /** Viewers of this process. */
  readonly size: number;
  close(): Promise<void>;
}

/**
 * The viewer side, one per API process: a single subscriber connection (opened on the first
 * viewer), one subscription per watched environment, each message parsed once and handed to
 * the process's viewers of that environment. Registrations are renewed every `heartbeatMs` and
 * lapse after `viewerTtlMs`, so a process that dies stops routing's publishing by itself.
 */
export function createTailSubscriptions(deps: { redis: Redis; keys: RedisKeys; clock: () => number; heartbeatMs?: number; viewerTtlMs?: number }): TailSubscriptions {
  const { redis, keys, clock } = deps;
  const heartbeatMs = deps.heartbeatMs ?? 10_000;
  const viewerTtlMs = deps.viewerTtlMs ?? 30_000;
  const viewers = new Map<string, { member: string; channel: string; onMessage: (message: TailMessage) => void }>();
  /** channel → its viewers here, and the SUBSCRIBE that serves them */
  const listeners = new Map<string, { ids: Set<string>; subscribed: Promise<unknown> }>();
  let subscriber: Redis | undefined;
  let heartbeat: NodeJS.Timeout | undefined;

  const connection = (): Redis => {
    if (subscriber !== undefined) return subscriber;
    const created = duplicateConnection(redis);
    // ioredis reconnects and re-subscribes by itself; errors meanwhile are not the caller's to handle.
    created.on('error', () => undefined);
    created.on('message', (channel: string, text: string) => {
      const ids = listeners.get(channel)?.ids;
      if (ids === undefined || ids.size === 0) return;
      let message: TailMessage;
      try {
        message = JSON.parse(text) as TailMessage;
      } catch {
        return;
      }
      for (const id of ids) viewers.get(id)?.onMessage(message);
    });
    subscriber = created;
    return created;
  };

  const renew = async (): Promise<void> => {
    if (viewers.size === 0) return;
    const expiresAt = clock() + viewerTtlMs;
    const pipeline = redis.pipeline();
    for (const viewer of viewers.values()) pipeline.zadd(keys.liveTailViewers, expiresAt, viewer.member);
    pipeline.zremrangebyscore(keys.liveTailViewers, '-inf', clock());
    await pipeline.exec();
  };

  return {
    async watch(environmentId, filter, onMessage) {
      const id = randomUUID();
      const member = JSON.stringify({ id, environmentId, ...filter });
      const channel = keys.liveTailChannel(environmentId);
      viewers.set(id, { member, channel, onMessage });
      let listening = listeners.get(channel);
      if (listening === undefined) listeners.set(channel, (listening = { ids: new Set(), subscribed: connection().subscribe(channel) }));
      const ids = listening.ids;
      ids.add(id);
      try {
        await listening.subscribed;
        await redis.multi().zremrangebyscore(keys.liveTailViewers, '-inf', clock()).zadd(keys.liveTailViewers, clock() + viewerTtlMs, member).exec();
      } catch (error) {
        viewers.delete(id);
        ids.delete(id);
        if (ids.size === 0 && listeners.get(channel) === listening) listeners.delete(channel);
        throw error;
      }
      if (heartbeat === undefined) {
        heartbeat = setInterval(() => void renew().catch(() => undefined), heartbeatMs);
        heartbeat.unref();
      }
      let stopped = false;
      return {
        async stop() {
          if (stopped) return;
          stopped = true;
          viewers.delete(id);
          const remaining = listeners.get(channel)?.ids;
          remaining?.delete(id);
          // Sent at once: a later watch's SUBSCRIBE on the same connection then comes after it.
          let unsubscribed: Promise<unknown> | undefined;
          if (remaining !== undefined && remaining.size === 0) {
            listeners.delete(channel);
            unsubscribed = subscriber?.unsubscribe(channel).catch(() => undefined);
          }
          if (viewers.size === 0 && heartbeat !== undefined) {
            clearInterval(heartbeat);
            heartbeat = undefined;
          }
          await Promise.all([redis.zrem(keys.liveTailViewers, member).catch(() => undefined), unsubscribed]);
        },
      };
    },
    get size() {
      return viewers.size;
    },
    async close() {
      if (heartbeat !== undefined) clearInterval(heartbeat);
      heartbeat = undefined;
      const members = [...viewers.values()].map((viewer) => viewer.member);
      viewers.clear();
      listeners.clear();
      if (members.length > 0) await redis.zrem(keys.liveTailViewers, ...members).catch(() => undefined);
      subscriber?.disconnect();
      subscriber = undefined;
    },
  };
}
