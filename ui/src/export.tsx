import { useState } from 'preact/hooks';
import { api, ApiError, type Environment } from './api.js';

interface ExportCounts {
  readonly since: number;
  readonly until: number;
  readonly objects: number;
  readonly rowsRead: number;
  readonly rowsMatched: number;
  readonly byFlag: Record<string, number>;
  readonly unreadableRows: number;
}
interface BackfillReport extends ExportCounts {
  readonly to: string;
  readonly dryRun: boolean;
  readonly sent: number;
  readonly jobs: number;
  readonly notSent: Record<string, number>;
}

const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

/** Rows of an export body: JSON lines, or CSV records after the header (a quoted field may hold line breaks). */
function rowCount(body: string, format: string): number {
  if (format === 'jsonl') return body.split('\n').filter((line) => line !== '').length;
  let records = 0;
  let quoted = false;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '"') quoted = !quoted;
    else if (body[i] === '\n' && !quoted) records++;
  }
  return Math.max(0, records - 1);
}

const describeCounts = (c: ExportCounts) =>
  `${c.rowsMatched} row(s) matched of ${c.rowsRead} read in ${c.objects} object(s), ${new Date(c.since).toISOString()} → ${new Date(c.until).toISOString()}` +
  (c.unreadableRows > 0 ? `; ${c.unreadableRows} unreadable row(s) skipped` : '');

/** Query an s3 destination's archive: counts, a download (JSON lines or CSV), or a backfill into another destination. */
export function ExportView({ environment }: { environment: Environment }) {
  const archives = environment.destinations.filter((d) => d.type === 's3');
  const [from, setFrom] = useState(archives[0]?.id ?? '');
  const [flags, setFlags] = useState('');
  const [treatments, setTreatments] = useState('');
  const [keys, setKeys] = useState('');
  const [since, setSince] = useState('24h');
  const [until, setUntil] = useState('');
  const [format, setFormat] = useState('jsonl');
  const [to, setTo] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string>();
  const [counts, setCounts] = useState<ExportCounts>();
  const [dryRunFor, setDryRunFor] = useState<string>();

  const archive = archives.some((a) => a.id === from) ? from : (archives[0]?.id ?? '');
  const query = () => ({ from: archive, flags: list(flags), treatments: list(treatments), keys: list(keys), since, ...(until.trim() ? { until: until.trim() } : {}) });
  const run = async (what: string, action: () => Promise<void>) => {
    setBusy(true);
    setResult(undefined);
    setCounts(undefined);
    try {
      await action();
    } catch (caught) {
      setResult(`${what} failed: ${(caught as Error).message}`);
    } finally {
      setBusy(false);
    }
  };

  const count = () =>
    run('Count', async () => {
      const report = await api<ExportCounts>('POST', '/impressions/export', { ...query(), dryRun: true });
      setCounts(report);
      setResult(describeCounts(report));
    });
  const download = () =>
    run('Download', async () => {
      const response = await fetch('/admin/v1/impressions/export', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...query(), format }),
      });
      if (!response.ok) {
        const parsed = (await response.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
        throw new ApiError(response.status, parsed?.error?.message ?? `HTTP ${response.status}`);
      }
      // A failure mid-stream cuts the body short: reading it then throws rather than saving part of it.
      const body = await response.text();
      const url = URL.createObjectURL(new Blob([body], { type: response.headers.get('content-type') ?? 'application/octet-stream' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = `impressions-${archive}.${format}`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setResult(`Downloaded ${rowCount(body, format)} row(s) as ${link.download}.`);
    });
  const backfill = (dryRun: boolean) =>
    run(dryRun ? 'Backfill dry run' : 'Backfill', async () => {
      const report = await api<BackfillReport>('POST', '/impressions/backfill', { ...query(), to, dryRun });
      const notSent = Object.entries(report.notSent).map(([reason, n]) => `${reason}: ${n}`);
      setCounts(report);
      setDryRunFor(dryRun ? JSON.stringify([query(), to]) : undefined);
      setResult(
        `${dryRun ? 'Would send' : 'Queued'} ${report.sent} impression(s) to ${report.to} in ${report.jobs} job(s)` +
          (notSent.length > 0 ? `; not sent: ${notSent.join(', ')}` : '') +
          `. ${describeCounts(report)}.`,
      );
    });

  if (archives.length === 0) {
    return <section>No s3 destination in {environment.id}: exports read an s3 destination's archive.</section>;
  }
  const targets = environment.destinations.filter((d) => d.id !== archive && d.enabled);
  return (
    <section class="export">
      <h2>Export impressions</h2>
      <div class="row">
        <label>
          Archive{' '}
          <select name="from" value={archive} onChange={(e) => setFrom(e.currentTarget.value)}>
            {archives.map((a) => (
              <option key={a.id} value={a.id}>
                {a.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Flags <input name="flags" placeholder="any (comma-separated)" value={flags} onInput={(e) => setFlags(e.currentTarget.value)} />
        </label>
        <label>
          Treatments <input name="treatments" placeholder="any" value={treatments} onInput={(e) => setTreatments(e.currentTarget.value)} />
        </label>
        <label>
          Keys <input name="keys" placeholder="any" value={keys} onInput={(e) => setKeys(e.currentTarget.value)} />
        </label>
      </div>
      <div class="row">
        <label>
          Since <input name="since" placeholder="ISO date, epoch ms or 2h, 7d" value={since} onInput={(e) => setSince(e.currentTarget.value)} />
        </label>
        <label>
          Until <input name="until" placeholder="now" value={until} onInput={(e) => setUntil(e.currentTarget.value)} />
        </label>
        <label>
          Format{' '}
          <select name="format" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
            <option value="jsonl">JSON lines</option>
            <option value="csv">CSV</option>
          </select>
        </label>
        <button disabled={busy} onClick={() => void count()}>
          Count
        </button>
        <button disabled={busy} onClick={() => void download()}>
          Download
        </button>
      </div>
      <div class="row">
        <label>
          Backfill to{' '}
          <select name="to" value={to} onChange={(e) => setTo(e.currentTarget.value)}>
            <option value="">—</option>
            {targets.map((d) => (
              <option key={d.id} value={d.id}>
                {d.id}
              </option>
            ))}
          </select>
        </label>
        <button disabled={busy || to === ''} onClick={() => void backfill(true)}>
          Dry run
        </button>
        {/* The real backfill only after a dry run of the same query and destination. */}
        <button disabled={busy || to === '' || dryRunFor !== JSON.stringify([query(), to])} onClick={() => void backfill(false)}>
          Backfill
        </button>
      </div>
      {busy && <p class="notice">Working…</p>}
      {result && <p class="notice result">{result}</p>}
      {counts && Object.keys(counts.byFlag).length > 0 && (
        <table class="export-counts">
          <thead>
            <tr>
              <th>Flag</th>
              <th>Rows matched</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(counts.byFlag).map(([flag, n]) => (
              <tr key={flag} data-flag={flag}>
                <td>{flag}</td>
                <td>{n}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
