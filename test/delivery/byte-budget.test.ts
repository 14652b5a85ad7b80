import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ByteBudget } from '../../src/delivery/byte-budget.js';

describe('byte budget of a delivery process', () => {
  test('holds at most its limit, first come first served, and lets one oversized job run alone', async () => {
    const budget = new ByteBudget(100);
    assert.equal(await budget.acquire(60, 1_000), true);
    const big = budget.acquire(50, 60_000);
    const small = budget.acquire(10, 60_000);
    assert.equal(budget.inUse, 60, 'the 50 waits; the 10 queues behind it instead of overtaking');
    budget.release(60);
    assert.equal(await big, true);
    assert.equal(await small, true);
    assert.equal(budget.inUse, 60);
    budget.release(60);
    assert.equal(await budget.acquire(500, 1_000), true, 'bigger than the budget: runs when nothing else does');
    assert.equal(await budget.acquire(1, 0), false, 'nothing more while it runs; the wait ends with false');
    budget.release(500);
    assert.equal(budget.inUse, 0);
  });
});
