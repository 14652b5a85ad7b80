import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { confirm } from '../../src/cli/output.js';

describe('the safety catch of destructive commands', () => {
  test('on a terminal the catch asks, and only "y" goes ahead', async () => {
    const ask = async (answer: string) => {
      const input = Object.assign(new PassThrough(), { isTTY: true });
      const output = new PassThrough();
      const asked = confirm('apply --prune deletes the 2 item(s) above', { input, output });
      input.end(`${answer}\n`);
      return asked;
    };
    await ask('y');
    await assert.rejects(ask('n'), /not confirmed; nothing was changed/);
    await assert.rejects(ask(''), /not confirmed/);
    await assert.rejects(confirm('x', { input: Object.assign(new PassThrough(), { isTTY: false }) }), /--yes/);
  });
});
