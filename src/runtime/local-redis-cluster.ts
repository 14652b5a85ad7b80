import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { partitionPrefix } from '../stores/redis-keys.js';
import { freePort } from './redis-connection.js';

/** Why a local cluster cannot be started here (no redis-server, or one built without cluster support), or undefined. */
export function clusterUnsupported(): string | undefined {
  const server = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (server.error !== undefined || server.status !== 0) return 'redis-server is not installed';
  const cli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' });
  if (cli.error !== undefined || cli.status !== 0) return 'redis-cli is not installed';
  const major = Number(/v=(\d+)/.exec(server.stdout)?.[1] ?? '0');
  if (major < 5) return `redis-server ${server.stdout.trim()} is older than 5 (no \`redis-cli --cluster create\`)`;
  return undefined;
}

/**
 * A local Redis Cluster of three masters (no replicas): three `redis-server --cluster-enabled yes`
 * children on free ports, joined by `redis-cli --cluster create`, their files in a temporary
 * folder removed by `stop()`. For the tests and the benchmark (`npm run bench -- --cluster`), not
 * for production: it has no persistence and no replicas.
 */
export class LocalRedisCluster {
  private constructor(
    readonly ports: readonly number[],
    private readonly children: readonly ChildProcess[],
    private readonly dir: string,
  ) {}

  /** `redis+cluster://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`, as REDIS_URL takes it. */
  get url(): string {
    return `redis+cluster://${this.ports.map((port) => `127.0.0.1:${port}`).join(',')}`;
  }

  /** `onSpawn` sees each redis-server child (the benchmark kills them all if it is interrupted). */
  static async start(timeoutMs = 20_000, options: { onSpawn?: (child: ChildProcess) => void } = {}): Promise<LocalRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-cluster-'));
    const ports = [await freePort(), await freePort(), await freePort()];
    const children = ports.map((port) => {
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      options.onSpawn?.(child);
      return child;
    });
    const cluster = new LocalRedisCluster(ports, children, dir);
    try {
      const deadline = Date.now() + timeoutMs;
      await Promise.all(ports.map((port) => cluster.poll(port, deadline, async (node) => (await node.ping()) === 'PONG', 'PONG')));
      const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: timeoutMs });
      if (created.status !== 0) throw new Error(`redis-cli --cluster create failed (${created.status}): ${created.stdout}${created.stderr}`);
      // Every node must agree that all slots are served before clients may use it.
      await Promise.all(ports.map((port) => cluster.poll(port, deadline, async (node) => /cluster_state:ok/.test(await node.cluster('INFO')), 'cluster_state:ok')));
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /**
   * A prefix `<stem>-<n>` whose `partitions` partitions' hash tags (FLAGSTREAM_REDIS_PARTITIONS)
   * are served by as many different masters as there can be, asked of the cluster (CLUSTER
   * KEYSLOT, CLUSTER SLOTS): where a deployment's partitions land then does not depend on luck.
   */
  async prefixSpreadOver(stem: string, partitions: number): Promise<string> {
    const node = new Redis(this.ports[0] ?? 0, '127.0.0.1', { maxRetriesPerRequest: 0 });
    node.on('error', () => undefined);
    try {
      const ranges = await node.cluster('SLOTS');
      const owner = (slot: number) => ranges.findIndex(([first, last]) => slot >= first && slot <= last);
      for (let n = 0; ; n += 1) {
        const prefix = `${stem}-${n}`;
        const owners = new Set<number>();
        for (let partition = 0; partition < partitions; partition += 1) owners.add(owner(Number(await node.cluster('KEYSLOT', partitionPrefix(prefix, true, partition, partitions)))));
        if (owners.size === Math.min(partitions, ranges.length)) return prefix;
      }
    } finally {
      node.disconnect();
    }
  }

  /** Polls node `port` until `ready` holds (a node coming up, a cluster converging: no event tells). */
  private async poll(port: number, deadline: number, ready: (node: Redis) => Promise<boolean>, what: string): Promise<void> {
    const node = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    node.on('error', () => undefined);
    try {
      for (;;) {
        if (node.status !== 'ready') await node.connect().catch(() => undefined);
        if (node.status === 'ready' && (await ready(node).catch(() => false))) return;
        if (Date.now() > deadline) throw new Error(`redis cluster node ${port}: no ${what} in time`);
        await delay(50);
      }
    } finally {
      node.disconnect();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
