import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import { defineHttpConnector } from '../../src/connectors/define-http-connector.js';
import { createDestinationGuard, type DestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import { deliverThrough, numberedImpressions } from '../helpers/connector-harness.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { webhookConnector } from '../../src/connectors/webhook/webhook-connector.js';

// ——— An independent oracle: the IANA special-purpose registries as numbers ———
// https://www.iana.org/assignments/iana-ipv4-special-registry and iana-ipv6-special-registry,
// plus multicast, site-local and everything IPv6 outside 2000::/3 (IANA's only global unicast block).

function v4ToNumber(text: string): bigint {
  return text.split('.').reduce((value, octet) => (value << 8n) | BigInt(Number(octet)), 0n);
}
function v6ToNumber(text: string): bigint {
  const [head = '', tail] = text.split('::');
  const groups = (part: string | undefined) => (part === undefined || part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n);
}
const cidr = (text: string, v6: boolean) => {
  const [net = '', bits = '0'] = text.split('/');
  const width = v6 ? 128n : 32n;
  const size = 1n << (width - BigInt(bits));
  const start = v6 ? v6ToNumber(net) : v4ToNumber(net);
  return { text, start, end: start + size - 1n };
};
const refusedV4 = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24',
  '192.31.196.0/24', '192.52.193.0/24', '192.88.99.0/24', '192.168.0.0/16', '192.175.48.0/24', '198.18.0.0/15', '198.51.100.0/24',
  '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4', '255.255.255.255/32',
].map((text) => cidr(text, false));
/** IPv6 blocks refused outright (inside 2000::/3; everything outside it is refused too). */
const refusedV6 = [
  '2001::/23', '2001:db8::/32', '2620:4f:8000::/48', '3fff::/20',
].map((text) => cidr(text, true));
const teredo = cidr('2001::/32', true);
const sixToFour = cidr('2002::/16', true);
const globalUnicast = cidr('2000::/3', true);
/** Forms that carry an IPv4 address in their last 32 bits. */
const lastBitsEmbeddings = ['::ffff:0:0/96', '::ffff:0:0:0/96', '64:ff9b::/96'].map((text) => cidr(text, true));
const within = (value: bigint, range: { start: bigint; end: bigint }) => value >= range.start && value <= range.end;

const ownAddresses = Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).map((entry) => entry.address.split('%')[0] ?? ''));
const ownV4 = new Set(ownAddresses.filter((a) => !a.includes(':')).map(v4ToNumber));
const ownV6 = new Set(ownAddresses.filter((a) => a.includes(':')).map(v6ToNumber));

function oracleRefusesV4(value: bigint): boolean {
  return refusedV4.some((range) => within(value, range)) || ownV4.has(value);
}
function oracleRefusesV6(value: bigint): boolean {
  const last32 = value & 0xffffffffn;
  if (lastBitsEmbeddings.some((range) => within(value, range))) return oracleRefusesV4(last32);
  if (within(value, sixToFour)) return oracleRefusesV4((value >> 80n) & 0xffffffffn);
  if (within(value, teredo)) return oracleRefusesV4((value >> 64n) & 0xffffffffn) || oracleRefusesV4(last32 ^ 0xffffffffn);
  if (!within(value, globalUnicast)) return true;
  return refusedV6.some((range) => within(value, range)) || ownV6.has(value);
}

// ——— Generators: addresses in, at the edges of and around every range, in several spellings ———

const v4Text = (value: bigint) => [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
const v6Groups = (value: bigint) => [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((value >> shift) & 0xffffn).toString(16));
const inRange = (range: { start: bigint; end: bigint }) => fc.bigInt({ min: range.start, max: range.end });
const edgesOf = (range: { start: bigint; end: bigint }, max: bigint) => [range.start - 1n, range.start, range.end, range.end + 1n].filter((v) => v >= 0n && v <= max);
const maxV4 = (1n << 32n) - 1n;
const maxV6 = (1n << 128n) - 1n;

const anyV4 = fc.oneof(
  fc.bigInt({ min: 0n, max: maxV4 }),
  ...refusedV4.map(inRange),
  fc.constantFrom(...refusedV4.flatMap((range) => edgesOf(range, maxV4)), ...ownV4),
);
const anyV6 = fc.oneof(
  fc.bigInt({ min: 0n, max: maxV6 }),
  inRange(globalUnicast),
  ...refusedV6.map(inRange),
  ...['fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8', '100::/64', '100:0:0:1::/64', '64:ff9b:1::/48', '5f00::/16', '::/96'].map((text) => inRange(cidr(text, true))),
  fc.constantFrom(...[globalUnicast, teredo, sixToFour, ...refusedV6].flatMap((range) => edgesOf(range, maxV6)), 0n, 1n, ...ownV6),
  // IPv4 carried in IPv6: mapped, translated, NAT64, 6to4 (with any subnet and host), Teredo.
  fc.tuple(fc.constantFrom(...lastBitsEmbeddings), anyV4Base()).map(([range, v4]) => range.start + v4),
  fc.tuple(anyV4Base(), fc.bigInt({ min: 0n, max: (1n << 80n) - 1n })).map(([v4, rest]) => sixToFour.start + (v4 << 80n) + rest),
  fc.tuple(anyV4Base(), anyV4Base(), fc.bigInt({ min: 0n, max: 0xffffffffn })).map(([server, client, flags]) => teredo.start + (server << 64n) + (flags << 32n) + (client ^ 0xffffffffn)),
);
function anyV4Base() {
  return fc.oneof(fc.bigInt({ min: 0n, max: maxV4 }), ...refusedV4.map(inRange));
}

/** The same address as DNS, a URL or a person might write it. */
const v6Spellings = (value: bigint): string[] => {
  const groups = v6Groups(value);
  const full = groups.join(':');
  const dotted = `${groups.slice(0, 6).join(':')}:${v4Text(value & 0xffffffffn)}`;
  return [full, new URL(`http://[${full}]/`).hostname.slice(1, -1), full.toUpperCase(), dotted];
};

describe('destinations may reach only public addresses unless allowlisted', () => {
  const refuses = (guard: DestinationGuard, host: string, address: string) => assert.throws(() => guard.check(host, address), /is not public: .*; add it to FLAGSTREAM_DESTINATION_ALLOWLIST/, address);

  test('private, loopback, link-local and IPv4-mapped addresses are refused by default; public ones pass', () => {
    const guard = createDestinationGuard([]);
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.9', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1']) {
      refuses(guard, 'hooks.example.com', address);
    }
    guard.check('hooks.example.com', '93.184.216.34');
    guard.check('hooks.example.com', '2606:2800:220:1:248:1893:25c8:1946');
  });

  test('the reproductions: reserved ranges and every IPv6 form that carries loopback or a private address are refused', () => {
    const guard = createDestinationGuard([]);
    const cases: Record<string, string> = {
      'TEST-NET-1': '192.0.2.10',
      'TEST-NET-2': '198.51.100.7',
      'TEST-NET-3': '203.0.113.99',
      CGNAT: '100.127.255.254',
      benchmarking: '198.19.1.1',
      'this network': '0.1.2.3',
      reserved: '250.1.2.3',
      multicast: '239.255.255.250',
      broadcast: '255.255.255.255',
      ULA: 'fd12:3456::1',
      'site-local': 'fec0::1',
      documentation: '2001:db8::1',
      discard: '100::1',
      'IPv4-compatible loopback': '::127.0.0.1',
      'IPv4-mapped private': '::ffff:10.0.0.1',
      'IPv4-translated loopback': '::ffff:0:127.0.0.1',
      'NAT64 loopback': '64:ff9b::127.0.0.1',
      'NAT64 metadata': '64:ff9b::a9fe:a9fe',
      'local-use NAT64': '64:ff9b:1::808:808',
      '6to4 loopback': '2002:7f00:1::1',
      '6to4 private': '2002:c0a8:101::1',
      // Client 10.0.0.1, stored inverted in the last 32 bits.
      'Teredo with a private client': '2001:0:808:808::f5ff:fffe',
      'outside 2000::/3': '4000::1',
    };
    for (const [name, address] of Object.entries(cases)) assert.throws(() => guard.check('hooks.example.com', address), /is not public/, name);
    for (const address of ['64:ff9b::808:808', '2002:808:808::1', '::ffff:8.8.8.8']) guard.check('hooks.example.com', address);
  });

  test('property: the guard agrees with the IANA registries on every address, in every spelling', () => {
    const guard = createDestinationGuard([]);
    const refused = (address: string) => {
      try {
        guard.check('hooks.example.com', address);
        return false;
      } catch {
        return true;
      }
    };
    fc.assert(
      fc.property(anyV4, (value) => {
        const expected = oracleRefusesV4(value);
        assert.equal(refused(v4Text(value)), expected, `${v4Text(value)}: expected ${expected ? 'refused' : 'allowed'}`);
        // Configuration time judges a literal address the same way.
        assert.equal(guard.refusalForHost(new URL(`http://${v4Text(value)}/`).hostname) !== undefined, expected, `config time, ${v4Text(value)}`);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(anyV6, (value) => {
        const expected = oracleRefusesV6(value);
        for (const spelling of v6Spellings(value)) {
          assert.equal(refused(spelling), expected, `${spelling}: expected ${expected ? 'refused' : 'allowed'}`);
        }
        assert.equal(guard.refusalForHost(new URL(`http://[${v6Groups(value).join(':')}]/`).hostname) !== undefined, expected, `config time, ${v6Groups(value).join(':')}`);
      }),
      { numRuns: 3000 },
    );
  });

  test("the machine's own interface addresses are refused, even when public", () => {
    const guard = createDestinationGuard([], { interfaceAddresses: () => ['93.184.216.34', '2606:2800:220:1::7', 'fe80::1%eth0'] });
    refuses(guard, 'hooks.example.com', '93.184.216.34');
    refuses(guard, 'hooks.example.com', '2606:2800:220:1::7');
    refuses(guard, 'hooks.example.com', '::ffff:93.184.216.34');
    refuses(guard, 'hooks.example.com', '64:ff9b::93.184.216.34');
    guard.check('hooks.example.com', '93.184.216.35');
    assert.match(guard.refusalForHost('93.184.216.34') ?? '', /own interfaces/);
  });

  test('the allowlist takes host names, addresses and CIDRs, and covers the IPv6 forms of an allowed IPv4 address', () => {
    const guard = createDestinationGuard(['hooks.internal', '127.0.0.1', '10.0.0.0/8', ' ', 'fd00::/8']);
    guard.check('hooks.internal', '192.168.5.5');
    guard.check('HOOKS.internal.', '192.168.5.5');
    guard.check('localhost', '127.0.0.1');
    guard.check('any', '10.200.3.4');
    guard.check('any', '::ffff:10.200.3.4');
    guard.check('any', '64:ff9b::10.0.0.1');
    guard.check('any', 'fd12::1');
    refuses(guard, 'other.internal', '192.168.5.5');
    refuses(guard, 'localhost', '127.0.0.2');
    assert.throws(() => createDestinationGuard('10.0.0.0/33'), /FLAGSTREAM_DESTINATION_ALLOWLIST: "10.0.0.0\/33" is not a valid CIDR/);
    assert.deepEqual(createDestinationGuard('127.0.0.1, hooks.internal').refusalForHost('hooks.internal'), undefined);
  });

  test('configuration time refuses literal private addresses and local names, without DNS', () => {
    const strict = createDestinationGuard('');
    for (const host of ['127.0.0.1', '[::1]', '[::ffff:7f00:1]', '10.0.0.5', '169.254.169.254', 'localhost', 'api.localhost', 'localhost.', 'collector', 'metadata.google.internal', 'printer.local', 'router.home.arpa']) {
      assert.notEqual(strict.refusalForHost(host), undefined, host);
    }
    for (const host of ['hooks.example.com', 'api2.amplitude.com', '93.184.216.34', '[2606:4700::1111]']) assert.equal(strict.refusalForHost(host), undefined, host);
    // URL parsing normalises numeric spellings first: 2130706433 and 0x7f.1 are 127.0.0.1.
    for (const url of ['http://2130706433/', 'http://0x7f.1/', 'http://[0:0:0:0:0:ffff:127.0.0.1]/']) assert.notEqual(strict.refusalForHost(new URL(url).hostname), undefined, url);
    // Allowlisting loopback allows localhost; allowlisting some address leaves local names to connection time.
    const loopback = createDestinationGuard('127.0.0.1');
    assert.equal(loopback.refusalForHost('localhost'), undefined);
    assert.equal(loopback.refusalForHost('collector.internal'), undefined);
    assert.notEqual(loopback.refusalForHost('10.0.0.5'), undefined);
    assert.equal(createDestinationGuard('collector').refusalForHost('collector'), undefined);
  });
});

describe('the transport checks the guard on every connection', () => {
  test('a delivery to a loopback receiver without the allowlist is dead-lettered as destination_not_allowed, and sends nothing', async () => {
    const receiver = await HttpReceiver.start();
    const transport = createHttpTransport({ guard: createDestinationGuard([]), userAgent: 'test' });
    try {
      const port = new URL(receiver.url).port;
      const spellings = [`${receiver.url}/hook`, `http://localhost:${port}/`, `http://[::ffff:127.0.0.1]:${port}/`, `http://2130706433:${port}/`, `http://0x7f.0.0.1:${port}/`, `http://[64:ff9b::127.0.0.1]:${port}/`];
      for (const url of spellings) {
        const settlement = await deliverThrough(webhookConnector, { url }, numberedImpressions(2), transport);
        assert.equal(settlement.rejected.length, 2, url);
        assert.equal(settlement.rejected[0]?.code, 'destination_not_allowed', url);
      }
      assert.equal(receiver.requests.length, 0);
    } finally {
      transport.close();
      await receiver.close();
    }
  });

  test('the transport reports a refused address to every connector the same way', () => {
    const connector = defineHttpConnector({ type: 'x', displayName: 'x', description: 'x', settingsSchema: z.object({}), secretSettings: [], exampleSettings: {}, limits: () => ({ maxItemsPerRequest: 1, maxBytesPerRequest: 1024, maxBatchWaitMs: 0, maxConcurrentRequests: 1 }), encode: () => ({ requests: [], rejected: [], skipped: [] }) });
    const outcome = connector.classify({ ok: false, error: { code: 'DESTINATION_NOT_ALLOWED', message: 'no' } }, { itemIds: [], bytes: 0, request: { method: 'POST', url: 'http://x', headers: {}, body: '' } });
    assert.deepEqual(outcome, { kind: 'rejected', code: 'destination_not_allowed', reason: 'no' });
  });
});
