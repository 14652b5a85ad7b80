// `npm run bench:ingest`: validating and converting one parsed request body into canonical
// impressions, per format, the zod path as it was (test/helpers/zod-ingest-reference.ts, with
// its createHash ids) against the hand-written one; printed, never asserted. No Redis, no HTTP:
// the body is parsed once, as the JSON body parser hands it to the route.
import { type Impression, impressionIdOf } from '../src/domain/impression.js';
import type { IngestContext } from '../src/ingest/formats/ingest-context.js';
import { fromNativeJson } from '../src/ingest/formats/native-json.js';
import { fromSplitSdkBulk } from '../src/ingest/formats/split-sdk-bulk.js';
import { fromSplitWebhook } from '../src/ingest/formats/split-webhook.js';
import { referenceNativeJson, referenceSplitSdkBulk, referenceSplitWebhook } from '../test/helpers/zod-ingest-reference.js';

const count = 1000;
const now = 1_800_000_000_000;
const context: IngestContext = { environmentId: 'env-bench', environmentName: 'Bench', receivedAt: now };
const headers = { sdkVersion: 'nodejs-11.11.0', machineIp: '10.0.0.5', machineName: 'bench' };
const properties = (j: number) => JSON.stringify({ plan: 'pro', seats: j, beta: true });

/** As a Split SDK sends it: 10 flags of 100 impressions. */
function sdkBody(withProperties: boolean): unknown {
  const text = JSON.stringify(
    Array.from({ length: 10 }, (_, g) => ({
      f: `flag_${g}`,
      i: Array.from({ length: count / 10 }, (_, j) => ({
        k: `user-${g * 100 + j}`,
        t: j % 2 ? 'on' : 'off',
        m: now - 60_000 + j,
        c: 1_718_800_000_000,
        r: 'default rule',
        b: null,
        pt: null,
        ...(withProperties ? { properties: properties(j) } : {}),
      })),
    })),
  );
  return JSON.parse(text) as unknown;
}

function webhookItems(): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, j) => ({
    key: `user-${j}`,
    split: `flag_${j % 10}`,
    treatment: j % 2 ? 'on' : 'off',
    time: now - 60_000 + j,
    environmentId: 'split-env',
    environmentName: 'Production',
    label: 'default rule',
    splitVersionNumber: 1_718_800_000_000,
    sdk: 'nodejs',
    sdkVersion: '11.11.0',
    machineIp: '10.0.0.5',
    machineName: 'bench',
    trafficTypeName: 'user',
    properties: properties(j),
  }));
}

/**
 * CPU µs per impression of `run`, the best of several rounds after a warm-up. CPU time of this
 * process rather than wall time: on a shared machine other processes' load would be counted.
 */
function measure(run: () => unknown): number {
  for (let i = 0; i < 200; i += 1) run();
  const rounds: number[] = [];
  for (let round = 0; round < 9; round += 1) {
    const started = process.cpuUsage();
    for (let i = 0; i < 100; i += 1) run();
    const used = process.cpuUsage(started);
    rounds.push((used.user + used.system) / (100 * count));
  }
  return Math.min(...rounds);
}

const cases: [string, () => Impression[], () => Impression[]][] = [];
for (const withProperties of [false, true]) {
  const body = sdkBody(withProperties);
  cases.push([`SDK bulk${withProperties ? ', with properties' : ''}`, () => referenceSplitSdkBulk(body, headers, context), () => fromSplitSdkBulk(body, headers, context)]);
}
const hook = webhookItems();
cases.push(['Split webhook', () => referenceSplitWebhook(hook, context), () => fromSplitWebhook(hook, context)]);
const native = { impressions: webhookItems().map(({ environmentId: _id, environmentName: _name, ...rest }) => rest) };
cases.push(['native JSON', () => referenceNativeJson(native, context), () => fromNativeJson(native, context)]);

// The floor both paths share: the id of each impression (a SHA-256), as ingest now computes it.
const ids = (fromSplitSdkBulk(sdkBody(false), headers, context)).map((i) => [i.environmentId, i.split, i.key, i.treatment, i.label, i.time, i.splitVersionNumber] as const);
const idsOnly = () => ids.map(([environmentId, split, key, treatment, label, time, version]) => impressionIdOf(environmentId, split, key, undefined, treatment, label, time, version, undefined));

console.log(`flagstream ingest formats (${new Date().toISOString()}): one ${count}-impression body, validated and converted, µs per impression`);
for (const [name, zod, handWritten] of cases) {
  const before = measure(zod);
  const after = measure(handWritten);
  console.log(`  ${name.padEnd(28)} zod ${before.toFixed(2)}   hand-written ${after.toFixed(2)}   (${(before / after).toFixed(1)}x)`);
}
console.log(`  of which the impression id alone (SHA-256): ${measure(idsOnly).toFixed(2)}`);
