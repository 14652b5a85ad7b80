import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { type LocalS3, s3Credentials, startLocalS3 } from '../helpers/s3-server.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

// The dashboard in a real browser (Debian's Chromium, never a downloaded one) against the whole
// stack: API, workers, Redis and a real local webhook receiver.
const chromiumPath = '/usr/bin/chromium';
const artifacts = new URL('../../test-artifacts/', import.meta.url).pathname;
const sdk = { authorization: 'Bearer prod-sdk-key' };
const timeout = 10_000;

describe('dashboard under /ui, in a real browser', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let s3: LocalS3;
  let browser: Browser;
  let page: Page;

  const send = async (impressions: Record<string, unknown>[]) => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions }, sdk);
    assert.equal(response.status, 202, JSON.stringify(response.body));
  };
  const receivedKeys = () => receiver.requests.filter((r) => r.url === '/hook').flatMap((r) => (JSON.parse(r.body) as { key: string }[]).map((i) => i.key));

  before(async () => {
    receiver = await HttpReceiver.start();
    s3 = await startLocalS3('archive');
    // Routing asks on every job whether anyone watches the tail (1 s in production).
    app = await startTestApp({ workerOptions: { tailCheckIntervalMs: 0 } });
    await app.apply({
      environments: [
        {
          id: 'env-prod',
          sdkKeys: ['prod-sdk-key'],
          flags: [
            { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
            { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
          ],
          destinations: [],
        },
      ],
    });
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.setDefaultTimeout(timeout);
    mkdirSync(artifacts, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    await receiver?.close();
    await s3?.close();
  });

  test('the page, its queue views and the admin API refuse callers without the token or a session', async () => {
    const unauthenticated = await fetch(`${app.url}/admin/v1/environments`);
    assert.equal(unauthenticated.status, 401);
    const board = await fetch(`${app.url}/ui/queues/`, { redirect: 'manual' });
    assert.equal(board.status, 302);
    assert.equal(board.headers.get('location'), '/ui/');
    const forged = await fetch(`${app.url}/admin/v1/environments`, { headers: { cookie: `flagstream_session=${Date.now() + 60_000}.${'A'.repeat(43)}` } });
    assert.equal(forged.status, 401);
    const wrong = await postJson(`${app.url}/ui/login`, { token: 'not-the-token' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('set-cookie'), null);
  });

  test('log in, toggle tracking, add a webhook destination, watch impressions, replay a dead letter', async () => {
    // Log in: an HttpOnly, SameSite=Strict session cookie that does not hold the token.
    await page.goto(`${app.url}/ui/`);
    await page.getByLabel('Admin token').fill(adminToken);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Flags', exact: true }).waitFor();
    const [cookie] = await page.context().cookies();
    assert.equal(cookie?.name, 'flagstream_session');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
    assert.ok(!cookie?.value.includes(adminToken));

    // Toggle a flag's tracking.
    const quietSwitch = page.getByRole('switch', { name: 'track impressions of quiet_flag' });
    assert.equal(await quietSwitch.isChecked(), false);
    // A click, not check(): the switch is controlled and shows the new state only once the API
    // answered, so check()'s immediate look at it would race the request.
    await quietSwitch.click();
    await page.locator('tr[data-flag="quiet_flag"]', { hasText: 'on' }).waitFor();
    await app.waitForState(async () => {
      const flags = (await app.admin('GET', '/environments/env-prod/flags')).body as { flags: { name: string; trackImpressions: boolean }[] };
      return flags.flags.find((f) => f.name === 'quiet_flag')?.trackImpressions === true;
    }, timeout, 'quiet_flag tracked');

    // Add a webhook destination through the form generated from the connector's schema.
    await page.getByLabel('Connector').selectOption('webhook');
    await page.getByLabel('Destination id').fill('hook-ui');
    await page.locator('#setting-url').fill(`${receiver.url}/hook`);
    assert.equal(await page.locator('#setting-secret').getAttribute('type'), 'password', 'secret settings are write-only');
    await page.getByRole('button', { name: 'Add destination' }).click();
    await page.getByText('Destination "hook-ui" added.').waitFor();
    await page.locator('tr[data-destination="hook-ui"]').waitFor();
    await page.getByRole('button', { name: 'Send test event to hook-ui' }).click();
    await page.locator('.test-answer', { hasText: 'HTTP 200' }).waitFor();
    await app.ctx.config.refresh();

    // Impressions appear in the live tail and in the monitoring chart.
    await page.getByRole('button', { name: 'Monitoring' }).click();
    await page.locator('.tail-state', { hasText: 'watching' }).waitFor();
    const now = Date.now();
    await send([
      { key: 'user-1', split: 'new_checkout', treatment: 'on', time: now },
      { key: 'user-2', split: 'new_checkout', treatment: 'on', time: now },
      { key: 'user-3', split: 'new_checkout', treatment: 'off', time: now },
      { key: 'user-4', split: 'quiet_flag', treatment: 'v2', time: now },
    ]);
    const tail = page.locator('table.tail tbody');
    await tail.locator('tr', { hasText: 'user-3' }).waitFor();
    await tail.locator('tr', { hasText: 'user-4' }).filter({ hasText: 'tracked → hook-ui' }).waitFor();
    await app.waitForDeliveries(1, timeout, 'hook-ui');
    await page.getByRole('button', { name: 'Refresh' }).click();
    const checkout = page.locator('[data-monitoring-flag="new_checkout"]');
    await checkout.locator('.flag-total', { hasText: '3' }).waitFor();
    await checkout.locator('tr[data-treatment="on"] td:nth-child(2)', { hasText: '2' }).waitFor();
    await checkout.locator('[data-chart="new_checkout: impressions per treatment"] canvas').waitFor();
    await page.locator('[data-monitoring-flag="quiet_flag"]').waitFor();
    await page.screenshot({ path: `${artifacts}dashboard-monitoring.png`, fullPage: true });

    // The destination fails: the receiver refuses the batch, which becomes a dead letter.
    await receiver.waitFor(() => receivedKeys().includes('user-4'), timeout, 'the first batch delivered');
    receiver.respond = () => ({ status: 400, body: '{"error":"schema mismatch"}' });
    await send([{ key: 'user-9', split: 'new_checkout', treatment: 'off', time: Date.now() }]);
    await tail.locator('tr', { hasText: 'user-9' }).waitFor();
    await app.waitForState(async () => ((await app.admin('GET', '/dead-letters?destination=hook-ui')).body as { deadLetters: unknown[] }).deadLetters.length === 1, timeout, 'a dead letter');

    await page.getByRole('button', { name: 'Dead letters' }).click();
    await page.getByLabel('Destination').selectOption('hook-ui');
    const row = page.locator('table.dead-letters tbody tr[data-dead-letter]');
    await row.filter({ hasText: 'hook-ui' }).waitFor();
    assert.equal(await row.count(), 1);
    await row.getByRole('button').click();
    const detail = page.locator('section.dead-letter');
    await detail.getByText('invalid_payload').waitFor();
    await detail.getByText('schema mismatch').waitFor();
    await detail.getByText('user-9').waitFor();

    // Fixed receiver: replaying the dead letter delivers it, and the page says so.
    receiver.respond = () => ({ status: 200, body: 'ok' });
    await detail.getByRole('button', { name: 'Replay this dead letter' }).click();
    await page.locator('.result', { hasText: 'Replayed 1 dead letter(s), 1 impression(s).' }).waitFor();
    await receiver.waitFor(() => receiver.requests.some((r, i) => r.url === '/hook' && r.body.includes('user-9') && receiver.requests.slice(0, i).some((earlier) => earlier.body.includes('user-9'))), timeout, 'user-9 delivered again');
    await page.getByLabel('Status').selectOption('replayed');
    await row.filter({ hasText: 'replayed' }).waitFor();

    await page.getByRole('button', { name: 'Environment' }).click();
    const destinationRow = page.locator('tr[data-destination="hook-ui"]');
    await destinationRow.locator('.status', { hasText: 'healthy' }).waitFor();
    await page.screenshot({ path: `${artifacts}dashboard.png`, fullPage: true });

    // Queue views (bull-board) open with the same session.
    await page.goto(`${app.url}/ui/queues/`);
    await page.getByText('delivery', { exact: true }).first().waitFor();
    await page.getByText('Loading...').waitFor({ state: 'detached' });
    await page.screenshot({ path: `${artifacts}dashboard-queues.png` });
  });

  test('export: count an s3 archive, download its rows, dry-run a backfill', async () => {
    // An archive (s3rver, path-style, allowed by FLAGSTREAM_DESTINATION_ALLOWLIST=127.0.0.1) and a webhook to backfill into.
    await app.apply({
      environments: [
        {
          id: 'env-prod',
          sdkKeys: ['prod-sdk-key'],
          flags: [{ name: 'new_checkout', trafficType: 'user', trackImpressions: true }],
          destinations: [
            { id: 'lake', type: 's3', settings: { bucket: 'archive', prefix: 'ui/', endpoint: s3.endpoint, forcePathStyle: true, maxWait: 0, ...s3Credentials } },
            { id: 'hook-ui', type: 'webhook', settings: { url: `${receiver.url}/hook` }, filters: { flags: ['new_checkout'] } },
          ],
        },
      ],
    });
    const now = Date.now();
    await send([
      { key: 'exp-1', split: 'new_checkout', treatment: 'on', time: now },
      { key: 'exp-2', split: 'new_checkout', treatment: 'on', time: now },
      { key: 'exp-3', split: 'new_checkout', treatment: 'off', time: now },
    ]);
    await app.waitForState(
      async () => ((await app.admin('POST', '/impressions/export', { from: 'lake', since: '1h', dryRun: true })).body as { rowsMatched?: number }).rowsMatched === 3,
      timeout,
      'three impressions archived in lake',
    );

    await page.goto(`${app.url}/ui/`);
    await page.getByRole('button', { name: 'Export', exact: true }).click();
    const view = page.locator('section.export');
    await view.getByLabel('Archive').selectOption('lake');
    await view.getByLabel('Since').fill('1h');
    await view.getByRole('button', { name: 'Count' }).click();
    await view.locator('.result', { hasText: '3 row(s) matched' }).waitFor();
    await view.locator('table.export-counts tr[data-flag="new_checkout"] td:nth-child(2)', { hasText: '3' }).waitFor();

    // Download with a filter: the file holds exactly the matching rows.
    await view.getByLabel('Treatments').fill('on');
    const [download] = await Promise.all([page.waitForEvent('download'), view.getByRole('button', { name: 'Download' }).click()]);
    assert.equal(download.suggestedFilename(), 'impressions-lake.jsonl');
    await view.locator('.result', { hasText: 'Downloaded 2 row(s)' }).waitFor();
    const lines = (await readFile(await download.path(), 'utf8')).split('\n').filter((line) => line !== '');
    const rows = lines.map((line) => JSON.parse(line) as { key: string; splitName: string; treatment: string });
    assert.deepEqual(rows.map((r) => r.key).sort(), ['exp-1', 'exp-2']);
    assert.ok(rows.every((r) => r.splitName === 'new_checkout' && r.treatment === 'on'));

    // A bad query is refused with the API's message.
    await view.getByLabel('Since').fill('yesterday-ish');
    await view.getByRole('button', { name: 'Count' }).click();
    await view.locator('.result', { hasText: 'Count failed' }).waitFor();

    // Backfill: a dry run first, which queues nothing.
    await view.getByLabel('Since').fill('1h');
    await view.getByLabel('Treatments').fill('');
    await view.getByLabel('Backfill to').selectOption('hook-ui');
    assert.equal(await view.getByRole('button', { name: 'Backfill', exact: true }).isDisabled(), true, 'no backfill before a dry run');
    await view.getByRole('button', { name: 'Dry run' }).click();
    await view.locator('.result', { hasText: 'Would send 3 impression(s) to hook-ui in 1 job(s)' }).waitFor();
    assert.equal(await view.getByRole('button', { name: 'Backfill', exact: true }).isEnabled(), true);
    await page.screenshot({ path: `${artifacts}dashboard-export.png`, fullPage: true });
  });
});
