import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/**
 * Redis connections for a single Redis (`redis://`, `rediss://`) or a Redis Cluster
 * (`redis+cluster://[user:password@]host:port,host:port,...`, `rediss+cluster://` for TLS).
 *
 * A Cluster is handed out typed as `Redis`: ioredis' `Cluster` has the same command methods
 * (both are its `Commander`), events and `status`; the members that differ are only used through
 * this module (`duplicateConnection`, `masterNodes`) or are the same in use (`connect`, `quit`,
 * `disconnect`). `redis.isCluster` tells them apart at run time.
 */

const clusterScheme = /^(rediss?)\+cluster:\/\//i;

export function isClusterUrl(url: string): boolean {
  return clusterScheme.test(url);
}

export interface ClusterUrl {
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
}

/** `redis+cluster://[user:password@]host[:port],host[:port][/]`: the startup nodes (any of the cluster's nodes will do) and their credentials. */
export function parseClusterUrl(url: string): ClusterUrl {
  const scheme = clusterScheme.exec(url);
  if (scheme === null) throw new Error(`not a Redis Cluster URL (redis+cluster://host:port,host:port): ${redactRedisUrl(url)}`);
  const rest = url.slice(scheme[0].length).replace(/[/?#].*$/, '');
  const at = rest.lastIndexOf('@');
  const credentials = at < 0 ? undefined : rest.slice(0, at);
  const hosts = at < 0 ? rest : rest.slice(at + 1);
  const colon = credentials?.indexOf(':') ?? -1;
  const decoded = (text: string | undefined) => (text === undefined || text === '' ? undefined : decodeURIComponent(text));
  const nodes = hosts
    .split(',')
    .filter((host) => host !== '')
    .map((host) => {
      const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
      if (match?.[1] === undefined) throw new Error(`REDIS_URL: "${host}" is not host:port`);
      return { host: match[1].replace(/^\[|\]$/g, ''), port: match[2] === undefined ? 6379 : Number(match[2]) };
    });
  if (nodes.length === 0) throw new Error('REDIS_URL: a Redis Cluster URL needs at least one host:port');
  return {
    nodes,
    username: decoded(credentials === undefined ? undefined : colon < 0 ? credentials : credentials.slice(0, colon)),
    password: decoded(credentials === undefined || colon < 0 ? undefined : credentials.slice(colon + 1)),
    tls: scheme[1]?.toLowerCase() === 'rediss',
  };
}

/** The URL with its password replaced by `***` (both forms). */
export function redactRedisUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
}

/** Cluster options carrying `options` (per-node ones under `redisOptions`, as ioredis wants them). */
function clusterOptions(options: RedisOptions, base: ClusterOptions = {}): ClusterOptions {
  const { lazyConnect, enableOfflineQueue, retryStrategy, ...perNode } = options;
  return {
    ...base,
    ...(lazyConnect === undefined ? {} : { lazyConnect }),
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    // The cluster reconnects as a whole: a single Redis' reconnect policy is the cluster's.
    ...(typeof retryStrategy === 'function' ? { clusterRetryStrategy: (times: number) => retryStrategy(times) } : {}),
    redisOptions: { ...base.redisOptions, ...perNode },
  };
}

/** A connection to `url`: a `Redis`, or for a `redis+cluster://` URL a `Cluster` (see above). */
export function createRedisClient(url: string, options: RedisOptions): Redis {
  if (!isClusterUrl(url)) return new Redis(url, options);
  const { nodes, username, password, tls } = parseClusterUrl(url);
  const cluster = new Cluster(
    nodes.map((node) => ({ ...node })),
    clusterOptions({ ...options, ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }), ...(tls ? { tls: {} } : {}) }),
  );
  // Cluster offers Redis' commands, events and status (see the module comment).
  return cluster as unknown as Redis;
}

/** A new connection to the same Redis or Cluster with `options` changed (`Cluster.duplicate` takes startup nodes first). */
export function duplicateConnection(redis: Redis, options: RedisOptions = {}): Redis {
  if (!redis.isCluster) return redis.duplicate(options);
  const cluster = redis as unknown as Cluster;
  // See the module comment.
  return cluster.duplicate([], clusterOptions(options, cluster.options)) as unknown as Redis;
}

/** The connections to each master of a Cluster, or the connection itself: for commands that read one node (SCAN, INFO). */
export function masterNodes(redis: Redis): Redis[] {
  return redis.isCluster ? (redis as unknown as Cluster).nodes('master') : [redis];
}
