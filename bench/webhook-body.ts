// Micro-benchmark of the webhook body: JSON.stringify of impressions built from a stored batch's
// rows (the encode path before) against JSON written straight from the rows (impressionJsonAt).
//   npm run bench:webhook-body [-- --rows 5000 --rounds 200]
import { parseArgs } from 'node:util';
import type { Impression } from '../src/domain/impression.js';
import { ImpressionJsonWriter } from '../src/domain/impression-json.js';
import { decodeStoredBatch, encodeStoredBatch, impressionAt, type RoutingView } from '../src/domain/stored-batch.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '200' } } });
const rowCount = Number(values.rows);
const rounds = Number(values.rounds);

// Shaped like the benchmark's load (bench/load-generator.ts): one SDK request's impressions.
const impressions: Impression[] = Array.from({ length: rowCount }, (_, i) => ({
  id: `imp${String(i).padStart(8, '0')}xxxxxxxxxxxxxxxxxxxxx`.slice(0, 32),
  key: `user-${i % 997}`,
  split: `flag_${i % 7}`,
  treatment: i % 2 === 0 ? 'on' : 'off',
  label: 'default rule',
  time: 1_800_000_000_000 + i,
  splitVersionNumber: 1_700_000_000_000,
  environmentId: 'env-bench',
  environmentName: 'Production',
  sdk: 'nodejs',
  sdkVersion: '11.11.0',
  machineIp: '10.0.0.1',
  machineName: 'host-1',
  receptionTimestamp: 1_800_000_000_500,
}));
const batch = decodeStoredBatch(encodeStoredBatch(impressions));
const rows = Array.from({ length: rowCount }, (_, i) => i);

function timeIt(name: string, body: () => number): void {
  let bytes = 0;
  for (let i = 0; i < 20; i += 1) bytes += body();
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i += 1) bytes += body();
  const ns = Number(process.hrtime.bigint() - started) / rounds;
  console.log(`${name.padEnd(52)} ${(ns / 1e6).toFixed(2).padStart(6)} ms per ${rowCount} rows ${(ns / rowCount).toFixed(0).padStart(6)} ns/row${bytes > 0 ? '' : ' (nothing written)'}`);
}

for (const labels of [true, false]) {
  const view: RoutingView = { labels, trafficTypes: { flag_0: ['user'], flag_1: ['user', 'tt-1'] } };
  const items = rows.map((row) => impressionAt(batch, row, view) as Impression);
  console.log(`labels ${labels ? 'on' : 'off'}, traffic types added to 2 flags of 7:`);
  timeIt('  impressionAt of every row (resolveJobItems)', () => rows.map((row) => impressionAt(batch, row, view)).length);
  timeIt('  Buffer.from(JSON.stringify(items)) (webhook encode)', () => Buffer.from(JSON.stringify(items)).byteLength);
  timeIt('  ImpressionJsonWriter, one body (row writer)', () => {
    const writer = new ImpressionJsonWriter(rowCount * 384);
    writer.byte(0x5b);
    for (const row of rows) {
      if (row > 0) writer.byte(0x2c);
      writer.row(batch, row, view);
    }
    writer.byte(0x5d);
    return writer.take().byteLength;
  });
}
