import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readEnv } from '../../src/app-config.js';
import { parseClusterUrl, redactRedisUrl } from '../../src/runtime/redis-client.js';
import { redactUrl } from '../../src/runtime/redis-connection.js';
import { deploymentKeys, deploymentPrefix, partitionedKeys, partitionOf, type RedisKeys, redisKeys } from '../../src/stores/redis-keys.js';

/** CRC16-CCITT (XMODEM), as Redis Cluster hashes keys (its specification, independent of ioredis). */
function crc16(text: string): number {
  let crc = 0;
  for (const byte of Buffer.from(text)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The slot of `key`: its hash tag (first `{…}` with something inside) when it has one, else the whole key. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return crc16(close > open + 1 ? key.slice(open + 1, close) : key) % 16384;
}

/** Every key of the deployment: constants as they are, key functions called with sample arguments. */
function everyKey(prefix: string): string[] {
  return Object.values(namedKeys(redisKeys(prefix)));
}

/** Each key of `keys` by its name in `redisKeys`. */
function namedKeys(keys: RedisKeys): Record<string, string> {
  return Object.fromEntries(Object.entries(keys).map(([name, key]) => {
    if (typeof key === 'string') return [name, key];
    // Key functions take ids, names and numbers; strings with a colon stand in for any of them.
    const call = key as (...args: unknown[]) => string;
    return [name, call(`${name}:a`, 'b:2', 3, 'd:4')];
  }));
}

/** The control plane: one deployment-wide copy, whatever FLAGSTREAM_REDIS_PARTITIONS; every other key is in a partition. */
const controlKeys = new Set(['configPartitions', 'configEnvironments', 'configVersion', 'configPlugins', 'configChannel', 'liveTailChannel', 'liveTailViewers', 'workerProcesses']);

describe('Redis Cluster: one hash tag per deployment', () => {
  test('known slot values (CRC16 as Redis computes it)', () => {
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));
    assert.equal(keySlot('123456789'), 0x31c3 % 16384);
  });

  test('in cluster mode every key of a deployment, BullMQ queues included, hashes to one slot', () => {
    for (const name of ['flagstream', 'fs:prod-eu', 'a.b_c']) {
      const prefix = deploymentPrefix(name, true);
      assert.equal(prefix, `{${name}}`);
      const keys = [...everyKey(prefix), `${redisKeys(prefix).bullPrefix}:ingest:wait`, `${redisKeys(prefix).bullPrefix}:delivery:1234`, `${redisKeys(prefix).bullPrefix}:delivery:events`];
      assert.ok(keys.length > 40);
      const slots = new Set(keys.map(keySlot));
      assert.deepEqual([...slots], [keySlot(name)], `keys: ${keys.join(' ')}`);
    }
    // Two deployments on one cluster need not share a node.
    assert.notEqual(keySlot(deploymentKeys('flagstream', { isCluster: true }).ledgerEnvironments), keySlot(deploymentKeys('other', { isCluster: true }).ledgerEnvironments));
  });

  test('a single Redis keeps the key names of existing deployments (no braces)', () => {
    const keys = deploymentKeys('flagstream', { isCluster: false });
    assert.equal(keys.bullPrefix, 'flagstream:q');
    assert.equal(keys.ledgerEnvironment('env-1'), 'flagstream:ledger:environment:env-1');
    assert.equal(keys.storedBatch('b1'), 'flagstream:batch:b1');
    assert.ok(everyKey('flagstream').every((key) => key.startsWith('flagstream:') && !key.includes('{')));
  });

  test('REDIS_URL takes redis+cluster:// (startup nodes, credentials, TLS) and redacts its password', () => {
    assert.deepEqual(parseClusterUrl('redis+cluster://127.0.0.1:7000,redis-b:7001,redis-c'), {
      nodes: [
        { host: '127.0.0.1', port: 7000 },
        { host: 'redis-b', port: 7001 },
        { host: 'redis-c', port: 6379 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
    assert.deepEqual(parseClusterUrl('rediss+cluster://app:s%40cret@[::1]:7000/'), { nodes: [{ host: '::1', port: 7000 }], username: 'app', password: 's@cret', tls: true });
    assert.equal(parseClusterUrl('redis+cluster://:pw@h:1').password, 'pw');
    assert.equal(readEnv({ REDIS_URL: 'redis+cluster://h1:7000,h2:7000' }).REDIS_URL, 'redis+cluster://h1:7000,h2:7000');
    assert.throws(() => readEnv({ REDIS_URL: 'redis+cluster://' }), /redis\+cluster:\/\/\[user:password@\]host:port,host:port/);
    assert.throws(() => readEnv({ REDIS_URL: 'redis+cluster://h1:port' }), /REDIS_URL/);
    assert.equal(redactRedisUrl('redis+cluster://app:s3cret@h1:1,h2:2'), 'redis+cluster://app:***@h1:1,h2:2');
    assert.equal(redactUrl('redis+cluster://app:s3cret@h1:1,h2:2'), 'redis+cluster://app:***@h1:1,h2:2');
    assert.equal(redactUrl('redis://app:s3cret@h1:1'), 'redis://app:***@h1:1');
  });
});

describe('Redis Cluster: FLAGSTREAM_REDIS_PARTITIONS', () => {
  test('an environment keeps its partition: CRC32 of its id modulo N', () => {
    assert.equal(partitionOf('env-a', 1), 0);
    // zlib's CRC32 of "123456789" is 0xCBF43926 (the standard check value).
    assert.equal(partitionOf('123456789', 7), 0xcbf43926 % 7);
    const spread = new Set(Array.from({ length: 30 }, (_, i) => partitionOf(`env-${i}`, 3)));
    assert.deepEqual([...spread].sort(), [0, 1, 2]);
  });

  test('with N = 1 every key keeps its name, on a single Redis and on a cluster', () => {
    for (const isCluster of [false, true]) {
      const [only, ...rest] = partitionedKeys('flagstream', { isCluster }, 1);
      assert.deepEqual(rest, []);
      assert.ok(only !== undefined);
      assert.deepEqual(namedKeys(only), namedKeys(deploymentKeys('flagstream', { isCluster })));
    }
  });

  test("every data-plane key of partition k, BullMQ's included, hashes to partition k's slot; control keys to the deployment's", () => {
    for (const isCluster of [true, false]) {
      const partitions = partitionedKeys('flagstream', { isCluster }, 3);
      assert.equal(partitions.length, 3);
      const slotsOfPartitions = new Set<number>();
      partitions.forEach((keys, partition) => {
        const named = namedKeys(keys);
        const data = Object.entries(named).filter(([name]) => !controlKeys.has(name));
        assert.ok(data.length > 30);
        const dataKeys = [...data.map(([, key]) => key), `${keys.bullPrefix}:ingest:wait`, `${keys.bullPrefix}:delivery:1234`, `${keys.bullPrefix}:delivery:events`];
        // A hash tag of its own on a single Redis too, so that the names are the same everywhere.
        assert.ok(dataKeys.every((key) => key.startsWith(`{flagstream:p${partition}}:`)), dataKeys.join(' '));
        assert.deepEqual([...new Set(dataKeys.map(keySlot))], [keySlot(`flagstream:p${partition}`)], `partition ${partition}: ${dataKeys.join(' ')}`);
        slotsOfPartitions.add(keySlot(`flagstream:p${partition}`));
        const control = Object.entries(named).filter(([name]) => controlKeys.has(name)).map(([, key]) => key);
        assert.equal(control.length, controlKeys.size);
        assert.deepEqual(control, [...controlKeys].map((name) => named[name]));
        assert.deepEqual(
          control.map((key) => key.startsWith(`${deploymentPrefix('flagstream', isCluster)}:`)),
          control.map(() => true),
        );
        if (isCluster) assert.deepEqual([...new Set(control.map(keySlot))], [keySlot('flagstream')]);
      });
      // Three partitions, three slots (that a cluster may place on three masters).
      assert.equal(slotsOfPartitions.size, 3);
    }
  });
});
