import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as flagstream from '../../src/index.js';

const adaptersDir = new URL('../../src/adapters/', import.meta.url);

test('the adapters import nothing outside src/adapters, so a browser bundle of flagstream/adapters pulls in no server code', () => {
  const files = readdirSync(adaptersDir).filter((name) => name.endsWith('.ts'));
  assert.ok(files.length >= 4);
  for (const name of files) {
    const source = readFileSync(new URL(name, adaptersDir), 'utf8');
    const specifiers = [...source.matchAll(/\bfrom\s+'([^']+)'/g)].map((match) => match[1] ?? '');
    for (const specifier of specifiers) assert.match(specifier, /^\.\/[\w-]+\.js$/, `${name} imports ${specifier}`);
  }
});

test('the package exports the adapters from its root and as flagstream/adapters', () => {
  assert.equal(typeof flagstream.bugsnagImpressionListener, 'function');
  assert.equal(typeof flagstream.quantumMetricImpressionListener, 'function');
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { exports: Record<string, { default: string }> };
  assert.equal(manifest.exports['./adapters']?.default, './dist/adapters/index.js');
});
