import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProgressBar } from '../../src/cli/progress-bar.js';

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 100, write: (text: string) => writes.push(text) } as unknown as NodeJS.WriteStream };
}

test('the progress bar redraws one line in place on a terminal, and clears it when done', () => {
  const { writes, stream } = fakeStream(true);
  const bar = createProgressBar(stream, 'export');
  bar.update(0.5, '2026-11-24 09:00 · 3 objects · 120 rows');
  bar.update(1, 'done');
  bar.done();
  assert.deepEqual(writes, [
    `\r\u001b[Kexport ${'█'.repeat(12)}${'░'.repeat(12)}  50% 2026-11-24 09:00 · 3 objects · 120 rows`,
    `\r\u001b[Kexport ${'█'.repeat(24)} 100% done`,
    '\r\u001b[K',
  ]);
});

test('nothing is drawn when the stream is not a terminal, or the bar is turned off', () => {
  for (const [isTTY, enabled] of [[false, true], [true, false]] as const) {
    const { writes, stream } = fakeStream(isTTY);
    const bar = createProgressBar(stream, 'export', enabled);
    bar.update(0.5, 'x');
    bar.done();
    assert.deepEqual(writes, []);
  }
});
