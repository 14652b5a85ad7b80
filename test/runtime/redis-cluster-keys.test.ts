import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readEnv } from '../../src/app-config.js';
import { parseClusterUrl, redactRedisUrl } from '../../src/runtime/redis-client.js';
import { redactUrl } from '../../src/runtime/redis-connection.js';
import { deploymentKeys, deploymentPrefix, redisKeys } from '../../src/stores/redis-keys.js';

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
  return Object.entries(redisKeys(prefix)).map(([name, key]) => {
    if (typeof key === 'string') return key;
    // Key functions take ids, names and numbers; strings with a colon stand in for any of them.
    const call = key as (...args: unknown[]) => string;
    return call(`${name}:a`, 'b:2', 3, 'd:4');
  });
}

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
