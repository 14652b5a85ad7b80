import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import type { Impression } from '../../src/domain/impression.js';
import { encodeProblems } from '../helpers/every-connector.js';
import { impressionsOfIngestJobs } from '../helpers/ingest-jobs.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * Hostile input, generated: every ingest endpoint gets shapes, types, sizes, nesting, unicode,
 * numbers at every boundary, duplicates, compression bombs and bodies cut in odd places. Whatever
 * comes in, the answer is a 2xx or a clear 4xx (never a 5xx, never a dropped connection), a 4xx
 * leaves nothing behind, a 2xx enqueues the whole request as one job whose every impression is
 * within the documented limits and encodes with every connector, and the process stays up.
 *
 * The seed is fixed so a run is repeatable; FC_SEED=<n> explores another part of the space, and a
 * failure prints the seed and path that reproduce it.
 */
const seed = Number(process.env.FC_SEED ?? 20_261_125);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const now = 1_800_000_000_000;
const maxBodyBytes = 256 * 1024;
// The documented limits (README.md, Ingest), written out: the oracle must not borrow the code's constants.
const maxTextLength = 1024;
const minTime = Date.UTC(2000, 0, 1);
const latestTime = now + 3_600_000;
const maxPropertiesLength = 32_768;

// ——— JSON text with raw tokens (1e400, -0, 9007199254740993, …), which JSON.stringify cannot write ———

class Raw {
  constructor(readonly text: string) {}
}
type Value = Raw | string | number | boolean | null | Value[] | { [name: string]: Value };

function toJson(value: Value): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object') return `{${Object.entries(value).map(([name, v]) => `${JSON.stringify(name)}:${toJson(v)}`).join(',')}}`;
  return JSON.stringify(value);
}

// ——— Field values: mostly plausible, often at a boundary, sometimes of the wrong type ———

const loneSurrogate = fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff');
const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 3 }), loneSurrogate, fc.string({ maxLength: 3 })).map((parts) => parts.join('')) },
  { weight: 1, arbitrary: fc.integer({ min: maxTextLength - 2, max: maxTextLength + 2 }).map((n) => 'k'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }).map((n) => '😀'.repeat(n) + 'é'.repeat(maxTextLength - 2 * n)) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'NA', 'null', '0', '\u0000', '\n') },
);
const wrongType: fc.Arbitrary<Value> = fc.oneof<fc.Arbitrary<Value>[]>(fc.integer(), fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}), fc.constant([["x"]]));
const textField: fc.Arbitrary<Value> = fc.oneof({ weight: 12, arbitrary: text }, { weight: 1, arbitrary: wrongType });

const boundaryNumbers = [
  '0', '-0', '1', '-1', '0.5', '1e-400', '1e400', '-1e400', '1E+2',
  '9007199254740991', '-9007199254740991', '9007199254740992', '9007199254740993', '-9007199254740993',
  '8640000000000000', '8640000000000001', '-8640000000000001', '9e15', '1e21', '1.7976931348623157e308',
  String(minTime - 1), String(minTime), String(latestTime), String(latestTime + 1), String(Math.floor(now / 1000)), `${now}.5`,
  '"NaN"', '"Infinity"', '"-Infinity"', `"${now}"`, 'null', 'true', '[]', '{}',
];
const numberField: fc.Arbitrary<Value> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: minTime, max: latestTime }).map((n) => new Raw(String(n))) },
  { weight: 4, arbitrary: fc.constantFrom(...boundaryNumbers).map((token) => new Raw(token)) },
  { weight: 1, arbitrary: fc.double().map((d) => new Raw(Number.isFinite(d) ? String(d) : 'null')) },
  { weight: 1, arbitrary: fc.integer().map((n) => new Raw(String(n))) },
);

const nestedText = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const flatProperties = fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(text, fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 6 });
/** `properties` as the SDKs send it: JSON text (or not). */
const propertiesText: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: flatProperties.map((p) => JSON.stringify(p)) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 40 }).map(nestedText) },
  { weight: 1, arbitrary: fc.integer({ min: maxPropertiesLength - 12, max: maxPropertiesLength - 8 }).map((n) => JSON.stringify({ p: 'x'.repeat(n) })) },
  { weight: 1, arbitrary: fc.constantFrom('{"p":"\\ud800"}', '{"p":"\\ud83d\\ude00"}', '{"\\u005f_proto__":{}}', 'not json', '[1,2]', '') },
  { weight: 1, arbitrary: wrongType },
);
/** `properties` as the webhook and native API also take it: an object. */
const propertiesAny: fc.Arbitrary<Value> = fc.oneof(
  { weight: 3, arbitrary: propertiesText },
  { weight: 3, arbitrary: flatProperties },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 40 }).map((depth) => new Raw(nestedText(depth))) },
  { weight: 1, arbitrary: fc.constantFrom('{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"a":1,"a":2}').map((t) => new Raw(t)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Value> },
);

/** An array of items, sometimes with the same item repeated (duplicates are accepted as they are). */
const items = <T extends Value>(item: fc.Arbitrary<T>, maxLength = 4): fc.Arbitrary<Value[]> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.array(item, { maxLength }) },
    { weight: 1, arbitrary: fc.tuple(item, fc.integer({ min: 2, max: 4 })).map(([one, n]) => Array.from({ length: n }, () => one)) },
  );

/** Now and then the whole body, or one element, is something else entirely. */
const orAnything = (arbitrary: fc.Arbitrary<Value>): fc.Arbitrary<Value> =>
  fc.oneof({ weight: 9, arbitrary }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Value> });

// ——— Whole impressions: valid, then (often) one field made hostile or removed ———

const validText = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom('k'.repeat(maxTextLength), 'é'.repeat(maxTextLength), '😀'.repeat(maxTextLength / 2), 'NA', '0', ' ', '\u0000') },
);
const validTime = fc.integer({ min: minTime, max: latestTime });
const validChangeNumber = fc.oneof(fc.integer(), fc.constantFrom(2 ** 53 - 1, -(2 ** 53 - 1), 0, 1_718_800_000_000));
const validPropertiesText = fc.oneof(
  { weight: 4, arbitrary: fc.dictionary(validText, fc.oneof(validText, fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 6 }).map((p) => JSON.stringify(p)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 16 }).map(nestedText) },
  { weight: 1, arbitrary: fc.constantFrom(JSON.stringify({ p: 'x'.repeat(maxPropertiesLength - 8) }), '{"p":"\\ud83d\\ude00"}', 'not json') },
);

/**
 * A valid record; three times in four, one of its fields is replaced by a hostile value or
 * removed, so every field's boundary is probed alone as well as in company.
 */
function oneFieldHostile(valid: Record<string, fc.Arbitrary<Value>>, required: readonly string[], hostile: Record<string, fc.Arbitrary<Value>>): fc.Arbitrary<Value> {
  const names = Object.keys(hostile);
  const change = fc.constantFrom(...names).chain((name) => fc.tuple(fc.constant(name), fc.option(hostile[name] as fc.Arbitrary<Value>, { freq: 6 })));
  return fc.tuple(fc.record(valid, { requiredKeys: required as string[] }), fc.option(change, { freq: 4 })).map(([record, changed]) => {
    if (changed === null) return record as Value;
    const [name, value] = changed;
    const copy: Record<string, Value> = { ...(record as Record<string, Value>) };
    if (value === null) delete copy[name];
    else copy[name] = value;
    return copy;
  });
}

const textFields = (names: readonly string[], arbitrary: fc.Arbitrary<Value>) => Object.fromEntries(names.map((name) => [name, arbitrary]));
const nativeText = ['key', 'split', 'treatment', 'id', 'label', 'bucketingKey', 'trafficTypeName', 'sdk', 'machineIp', 'machineName'];
const nativeImpression = oneFieldHostile(
  { ...textFields(nativeText, validText), time: validTime, splitVersionNumber: validChangeNumber, properties: fc.oneof(validPropertiesText, validPropertiesText.map((t) => new Raw(t.startsWith('{') ? t : '{}'))) },
  ['key', 'split', 'treatment', 'time'],
  { ...textFields(nativeText, textField), time: numberField, splitVersionNumber: numberField, properties: propertiesAny },
);
const webhookText = ['key', 'split', 'treatment', 'environmentId', 'environmentName', 'label', 'bucketingKey', 'sdk', 'sdkVersion', 'machineIp', 'machineName', 'trafficTypeId', 'trafficTypeName'];
const webhookImpression = oneFieldHostile(
  { ...textFields(webhookText, validText), time: validTime, splitVersionNumber: validChangeNumber, properties: validPropertiesText },
  ['key', 'split', 'treatment', 'time'],
  { ...textFields(webhookText, textField), time: numberField, splitVersionNumber: numberField, properties: propertiesAny },
);
const sdkImpression = oneFieldHostile(
  { ...textFields(['k', 't', 'r', 'b'], validText), m: validTime, c: validChangeNumber, pt: validTime, properties: validPropertiesText },
  ['k', 't', 'm'],
  { ...textFields(['k', 't', 'r', 'b'], textField), m: numberField, c: numberField, pt: numberField, properties: propertiesText },
);
const sdkGroup = oneFieldHostile({ f: validText, i: items(sdkImpression) }, ['f', 'i'], { f: textField, i: items(orAnything(sdkImpression)) });

interface Endpoint {
  readonly name: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** Impressions endpoints enqueue; the others only write stats. */
  readonly enqueues: boolean;
  readonly body: fc.Arbitrary<Value>;
}

const sdk = { authorization: 'Bearer key-p' };
const endpoints: readonly Endpoint[] = [
  {
    name: 'native',
    path: '/v1/impressions',
    headers: sdk,
    enqueues: true,
    body: fc.oneof(
      { weight: 9, arbitrary: orAnything(fc.record({ impressions: items(orAnything(nativeImpression)) })) },
      // The same name twice in one object: JSON.parse keeps the last, and so does ingest.
      { weight: 1, arbitrary: fc.tuple(text, text).map(([first, last]) => new Raw(`{"impressions":[{"key":${JSON.stringify(first)},"split":"f","treatment":"on","time":${now},"key":${JSON.stringify(last)}}]}`)) },
    ),
  },
  { name: 'sdk bulk', path: '/api/testImpressions/bulk', headers: sdk, enqueues: true, body: orAnything(items(orAnything(sdkGroup))) },
  { name: 'webhook', path: '/webhooks/split/impressions?token=token-p', headers: {}, enqueues: true, body: orAnything(items(orAnything(webhookImpression))) },
  { name: 'count', path: '/api/testImpressions/count', headers: sdk, enqueues: false, body: orAnything(fc.record({ pf: items(orAnything(fc.record({ f: textField, m: numberField, rc: numberField }))) })) },
  { name: 'keys ss', path: '/api/v1/keys/ss', headers: sdk, enqueues: false, body: orAnything(fc.record({ keys: items(orAnything(fc.record({ f: textField, ks: items(textField, 6) }))) })) },
  { name: 'keys cs', path: '/api/v1/keys/cs', headers: sdk, enqueues: false, body: orAnything(fc.record({ keys: items(orAnything(fc.record({ k: textField, fs: items(textField, 6) }))) })) },
  { name: 'events', path: '/api/events/bulk', headers: sdk, enqueues: false, body: fc.jsonValue({ maxDepth: 5 }) as fc.Arbitrary<Value> },
];

interface ErrorBody {
  readonly error?: { readonly code?: unknown; readonly message?: unknown; readonly field?: unknown };
}

/** What the documented limits say of an accepted impression; an empty list when it is within them all. */
function outsideLimits(impression: Impression): string[] {
  const problems: string[] = [];
  if (!Number.isSafeInteger(impression.time) || impression.time < minTime || impression.time > latestTime) problems.push(`time ${impression.time}`);
  if (impression.splitVersionNumber !== undefined && !Number.isSafeInteger(impression.splitVersionNumber)) problems.push(`splitVersionNumber ${impression.splitVersionNumber}`);
  for (const name of ['key', 'split', 'treatment', 'label', 'bucketingKey', 'trafficTypeId', 'trafficTypeName', 'sdk', 'sdkVersion', 'machineIp', 'machineName'] as const) {
    const value = impression[name];
    if (value === undefined) continue;
    if (value.length > maxTextLength) problems.push(`${name} is ${value.length} characters`);
    if (Buffer.from(value, 'utf8').toString('utf8') !== value) problems.push(`${name} is not valid Unicode`);
  }
  for (const name of ['key', 'split', 'treatment'] as const) if (impression[name] === '') problems.push(`${name} is empty`);
  if (impression.properties !== undefined && impression.properties.length > maxPropertiesLength) problems.push(`properties is ${impression.properties.length} characters`);
  return problems;
}

describe('every ingest endpoint, under generated hostile input', () => {
  let app: TestApp;

  before(async () => {
    // A short request timeout, so a stalled body is ended within the test (the default is 30 s).
    app = await startTestApp({ workers: false, clock: () => now, env: { FLAGSTREAM_MAX_BODY_BYTES: String(maxBodyBytes) }, server: { timeouts: { headersMs: 2000, requestMs: 2000, checkEveryMs: 250 } } });
    await app.apply({ environments: [{ id: 'env-p', sdkKeys: ['key-p'], webhookToken: 'token-p' }] });
  });
  after(async () => {
    const health = await fetch(`${app.url}/healthz`);
    assert.equal(health.status, 200, 'the process is still up');
    await app.close();
  });

  const stats = async () => JSON.stringify(await app.ctx.stats.flagStats('env-p'));

  /**
   * Posts `body` and checks every invariant of the answer; resolves to the status. The ingest
   * queue is emptied first, so a 2xx's job is the only one waiting.
   */
  const check = async (endpoint: Pick<Endpoint, 'path' | 'headers' | 'enqueues'>, body: string | Uint8Array, extraHeaders: Record<string, string> = {}): Promise<number> => {
    await app.ctx.queues.ingest.drain();
    const statsBefore = endpoint.enqueues ? '' : await stats();
    let response: Response;
    try {
      response = await fetch(`${app.url}${endpoint.path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...endpoint.headers, ...extraHeaders }, body });
    } catch (error) {
      assert.fail(`no answer (${error instanceof Error ? `${error.message} ${String((error.cause as { code?: string } | undefined)?.code)}` : String(error)})`);
    }
    const raw = await response.text();
    const status = response.status;
    assert.ok(status < 500, `${status} ${raw.slice(0, 300)}`);
    const answer = JSON.parse(raw) as ErrorBody & { accepted?: unknown };
    const jobs = await app.ctx.queues.ingest.getWaiting(0, -1);
    if (status >= 400) {
      assert.equal(typeof answer.error?.code, 'string', raw);
      assert.equal(typeof answer.error?.message, 'string', raw);
      // A schema problem names its field; only a body that is not JSON at all may not.
      if (status === 400 && typeof answer.error?.field !== 'string') assert.match(String(answer.error?.message), /not valid JSON|not valid gzip|is empty/, raw);
      assert.equal(jobs.length, 0, `a ${status} left ${jobs.length} job(s) in the queue`);
      if (!endpoint.enqueues) assert.equal(await stats(), statsBefore, `a ${status} changed the stats`);
      return status;
    }
    if (!endpoint.enqueues) return status;
    const impressions = await impressionsOfIngestJobs(app.ctx.batches, jobs);
    assert.equal(impressions.length, answer.accepted, `answered accepted ${String(answer.accepted)}, enqueued ${impressions.length}`);
    assert.ok(jobs.length <= 1, `one request became ${jobs.length} jobs`);
    const problems = impressions.flatMap((impression) => outsideLimits(impression).map((problem) => `${impression.id}: ${problem}`));
    // Routing fills trafficTypeName; every connector maps "user" to an identity.
    problems.push(...encodeProblems(impressions.map((impression) => ({ ...impression, trafficTypeName: impression.trafficTypeName ?? 'user' }))));
    assert.deepEqual(problems, [], 'an accepted impression is valid for every connector');
    return status;
  };

  for (const endpoint of endpoints) {
    test(`${endpoint.name}: generated bodies get a 2xx or a clear 4xx, whole or nothing`, async (t) => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(endpoint.body, async (body) => {
          const status = await check(endpoint, toJson(body));
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }),
        runs(endpoint.enqueues ? 200 : 100),
      );
      t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries(statuses))}`);
      // Both sides of the property were exercised: some bodies accepted, some refused (events take any JSON).
      const accepted = [...statuses].filter(([status]) => status < 300).reduce((sum, [, n]) => sum + n, 0);
      const refused = [...statuses].filter(([status]) => status >= 400).reduce((sum, [, n]) => sum + n, 0);
      assert.ok(accepted > 0 && (refused > 0 || endpoint.name === 'events'), JSON.stringify(Object.fromEntries(statuses)));
    });
  }

  test('bodies nested at any depth, in any field: 400 past 32 levels (16 inside properties), never a stack overflow', async () => {
    const deep = fc.record({
      depth: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 20_000 })),
      array: fc.boolean(),
      endpoint: fc.constantFrom(...endpoints),
    });
    await fc.assert(
      fc.asyncProperty(deep, async ({ depth, array, endpoint }) => {
        const inner = array ? `${'['.repeat(depth)}${']'.repeat(depth)}` : nestedText(depth);
        const bulk = endpoint.path.includes('testImpressions/bulk');
        const native = endpoint.path.startsWith('/v1/');
        const body = bulk
          ? `[{"f":"flag","i":[{"k":"u","t":"on","m":${now},"properties":${JSON.stringify(inner)}}]}]`
          : native
            ? `{"impressions":[{"key":"u","split":"f","treatment":"on","time":${now},"properties":{"p":${inner}}}]}`
            : `[${inner}]`;
        const status = await check(endpoint, body);
        // Nesting of the body itself, and of the properties text where there is one.
        const bodyDepth = bulk ? 4 : native ? 4 + depth : 1 + depth;
        const propertiesDepth = bulk ? depth : native ? depth + 1 : 0;
        if (bodyDepth > 32 || propertiesDepth > 16) assert.equal(status, 400);
        else if (bulk || native || endpoint.name === 'events') assert.ok(status < 300, `${status} at depth ${depth}`);
      }),
      runs(60),
    );
  });

  test('sizes around the limit: 413 exactly when the body, or its decompressed form, is over it', async () => {
    const sized = fc.record({
      size: fc.oneof(fc.integer({ min: maxBodyBytes - 64, max: maxBodyBytes + 64 }), fc.integer({ min: 1, max: 20 * maxBodyBytes })),
      encoding: fc.constantFrom('none', 'gzip', 'gzip-unlabelled', 'deflate'),
    });
    const native = endpoints[0] as Endpoint;
    await fc.assert(
      fc.asyncProperty(sized, async ({ size, encoding }) => {
        // Valid JSON of exactly `size` bytes: one impression, padded with whitespace.
        const json = `{"impressions":[{"key":"u","split":"f","treatment":"on","time":${now}}]}`;
        const plain = Buffer.from(json.padEnd(Math.max(size, json.length), ' '));
        const wire = encoding === 'none' ? plain : encoding === 'deflate' ? deflateSync(plain) : gzipSync(plain);
        const headers: Record<string, string> = encoding === 'gzip' || encoding === 'deflate' ? { 'content-encoding': encoding } : {};
        const status = await check(native, wire, headers);
        assert.equal(status, plain.length > maxBodyBytes ? 413 : 202, `${plain.length} bytes, ${encoding}, ${wire.length} on the wire`);
      }),
      runs(80),
    );
  });

  test('bytes that are not JSON, or not what their Content-Encoding says: 4xx', async () => {
    const garbage = fc.record({
      bytes: fc.oneof(fc.uint8Array({ maxLength: 512 }), fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.concat([Buffer.from([0x1f, 0x8b]), b]))),
      truncate: fc.nat(),
      encoding: fc.constantFrom(undefined, 'gzip', 'deflate', 'br', 'identity'),
      endpoint: fc.constantFrom(...endpoints),
    });
    await fc.assert(
      fc.asyncProperty(garbage, async ({ bytes, truncate, encoding, endpoint }) => {
        // Half the time, a real gzip stream cut short.
        const body = truncate % 2 === 0 ? bytes : gzipSync(Buffer.from(`{"impressions":[${'{"key":"u"},'.repeat(50)}1]}`)).subarray(0, truncate % 200);
        await check(endpoint, body, encoding === undefined ? {} : { 'content-encoding': encoding });
      }),
      runs(100),
    );
  });

  test('a body sent in pieces, split anywhere (inside a UTF-8 character too), is read whole', async () => {
    const url = new URL(app.url);
    const pieces = fc.record({ cuts: fc.uniqueArray(fc.nat(), { maxLength: 8 }), key: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }) });
    await fc.assert(
      fc.asyncProperty(pieces, async ({ cuts, key }) => {
        await app.ctx.queues.ingest.drain();
        const body = Buffer.from(JSON.stringify({ impressions: [{ key, split: 'f', treatment: 'on', time: now }] }));
        const head = `POST /v1/impressions HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\nauthorization: Bearer key-p\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
        const offsets = [...new Set(cuts.map((cut) => cut % body.length))].sort((a, b) => a - b);
        const parts = [Buffer.from(head), ...[0, ...offsets].map((start, i, all) => body.subarray(start, all[i + 1] ?? body.length))];
        const answer = await rawRequest(url, parts);
        assert.match(answer, /^HTTP\/1\.1 202 /, answer.slice(0, 300));
        const jobs = await app.ctx.queues.ingest.getWaiting(0, -1);
        assert.equal((await impressionsOfIngestJobs(app.ctx.batches, jobs))[0]?.key, key);
      }),
      runs(50),
    );
  });

  test('a client that sends a few bytes of its body and stalls is ended with a 4xx or a closed connection', async () => {
    // Node enforces requestTimeout on a timer of connectionsCheckingInterval: this app sets both short.
    const { requestTimeout, connectionsCheckingInterval } = app.server.server as { requestTimeout: number; connectionsCheckingInterval?: number };
    assert.ok(requestTimeout > 0 && requestTimeout + (connectionsCheckingInterval ?? 30_000) <= 5_000, `a short request timeout (${requestTimeout} ms)`);
    const url = new URL(app.url);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 20 }), async (sent) => {
        const head = `POST /v1/impressions HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\nauthorization: Bearer key-p\r\ncontent-length: 1000\r\n\r\n`;
        const answer = await rawRequest(url, [Buffer.from(head), Buffer.from('{"impressions":[{"key":"u"'.slice(0, sent))]);
        assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d /.test(answer), answer.slice(0, 200));
      }),
      runs(2),
    );
  });
});

/**
 * Writes `parts` one by one on a fresh socket, each after the previous was flushed and the event
 * loop turned (so the server reads them apart), and resolves with everything the server sent
 * once it closes the connection. The client never half-closes: Node's server would take a FIN
 * before the answer as an abort.
 */
function rawRequest(url: URL, parts: readonly Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(received).toString('utf8')));
    socket.once('connect', () => {
      const write = (index: number): void => {
        const part = parts[index];
        if (part === undefined) return;
        socket.write(part, () => setImmediate(() => write(index + 1)));
      };
      write(0);
    });
  });
}
