import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, type Environment, type MonitoringReport } from './api.js';

const palette = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
const refreshMs = 5000;

/** One uPlot chart, rebuilt when its data changes. */
function Chart({ title, x, series, points }: { title: string; x: number[]; series: { label: string; values: number[] }[]; points?: boolean }) {
  const element = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (element.current === null) return;
    const width = Math.max(320, element.current.clientWidth);
    const plot = new uPlot(
      {
        title,
        width,
        height: 240,
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: palette[i % palette.length], width: 2, points: { show: points === true, size: 8 } }))],
        // A range of one day (or one bucket) still gets a readable axis: half a day either side.
        scales: { x: { time: true, ...(x.length === 1 && x[0] !== undefined ? { range: [x[0] - 43_200, x[0] + 43_200] as uPlot.Range.MinMax } : {}) } },
        axes: [{}, { size: 50 }],
      },
      [x, ...series.map((s) => s.values)],
      element.current,
    );
    return () => plot.destroy();
  }, [title, x, series, points]);
  return <div class="chart" data-chart={title} ref={element} />;
}

interface TailEvent {
  readonly routedAt: string;
  readonly outcome: 'tracked' | 'dropped';
  readonly reason?: string;
  readonly destinations: string[];
  readonly impression: { key: string; split: string; treatment: string };
}

/** The live tail over server-sent events; the session cookie authenticates the EventSource. */
function LiveTail({ environment }: { environment: Environment }) {
  const [flag, setFlag] = useState('');
  const [events, setEvents] = useState<TailEvent[]>([]);
  const [state, setState] = useState('connecting');
  useEffect(() => {
    setEvents([]);
    const query = new URLSearchParams(flag ? { flag } : {});
    const source = new EventSource(`/admin/v1/environments/${encodeURIComponent(environment.id)}/tail?${query}`);
    source.addEventListener('ready', () => setState('watching'));
    source.addEventListener('impression', (event) => setEvents((current) => [JSON.parse((event as MessageEvent<string>).data) as TailEvent, ...current].slice(0, 200)));
    source.addEventListener('omitted', (event) => setState(`watching (${(JSON.parse((event as MessageEvent<string>).data) as { count?: number }).count ?? 'some'} impressions omitted)`));
    source.addEventListener('end', (event) => {
      setState(`ended: ${(JSON.parse((event as MessageEvent<string>).data) as { message: string }).message}`);
      source.close();
    });
    return () => source.close();
  }, [environment.id, flag]);
  return (
    <section>
      <h2>Live tail</h2>
      <div class="row">
        <label>
          Flag{' '}
          <select name="tail-flag" value={flag} onChange={(e) => setFlag(e.currentTarget.value)}>
            <option value="">all</option>
            {environment.flags.map((f) => (
              <option key={f.name}>{f.name}</option>
            ))}
          </select>
        </label>
        <span class="tail-state">{state}</span>
      </div>
      <table class="tail">
        <thead>
          <tr>
            <th>Time</th>
            <th>Flag</th>
            <th>Key</th>
            <th>Treatment</th>
            <th>Outcome</th>
          </tr>
        </thead>
        <tbody>
          {events.map((event, index) => (
            <tr key={index}>
              <td>{new Date(event.routedAt).toLocaleTimeString()}</td>
              <td>{event.impression.split}</td>
              <td>{event.impression.key}</td>
              <td>{event.impression.treatment}</td>
              <td>{event.outcome === 'tracked' ? `tracked → ${event.destinations.join(', ') || 'no destination'}` : `dropped (${event.reason ?? 'unknown reason'})`}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function MonitoringView({ environment }: { environment: Environment }) {
  const [since, setSince] = useState('1h');
  const [report, setReport] = useState<MonitoringReport>();
  const [error, setError] = useState<string>();
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const load = () =>
      void api<MonitoringReport>('GET', `/environments/${encodeURIComponent(environment.id)}/monitoring?since=${encodeURIComponent(since)}`).then(
        (answer) => (setReport(answer), setError(undefined)),
        (caught: unknown) => setError((caught as Error).message),
      );
    load();
    const timer = setInterval(load, refreshMs);
    return () => clearInterval(timer);
  }, [environment.id, since, version]);
  const seconds = report?.timestamps.map((t) => t / 1000) ?? [];
  const days = report?.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000) ?? [];
  return (
    <>
      <section>
        <h2>Monitoring</h2>
        <label>
          Range{' '}
          <select name="since" value={since} onChange={(e) => setSince(e.currentTarget.value)}>
            <option value="1h">last hour</option>
            <option value="6h">last 6 hours</option>
            <option value="24h">last 24 hours</option>
            <option value="7d">last 7 days</option>
          </select>
        </label>{' '}
        <button onClick={() => setVersion((n) => n + 1)}>Refresh</button>
        {error && <p class="error">{error}</p>}
        {report?.flags.length === 0 && <p>No tracked impressions in this range.</p>}
      </section>
      {report?.flags.map((flag) => (
        <section key={flag.flag} data-monitoring-flag={flag.flag}>
          <h2>
            {flag.flag}: <span class="flag-total">{flag.total}</span> impressions, {flag.uniqueKeys} unique keys
          </h2>
          <table>
            <thead>
              <tr>
                <th>Treatment</th>
                <th>Impressions</th>
                <th>Unique keys</th>
              </tr>
            </thead>
            <tbody>
              {flag.treatments.map((t) => (
                <tr key={t.treatment} data-treatment={t.treatment}>
                  <td>{t.treatment}</td>
                  <td>{t.total}</td>
                  <td>{t.uniqueKeys}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div class="charts">
            <Chart title={`${flag.flag}: impressions per treatment`} x={seconds} series={flag.treatments.map((t) => ({ label: t.treatment, values: t.impressions }))} />
            <Chart title={`${flag.flag}: unique keys per day`} x={days} series={flag.treatments.map((t) => ({ label: t.treatment, values: t.uniqueKeysPerDay }))} points />
          </div>
        </section>
      ))}
      <section>
        <h2>Monthly tracked keys</h2>
        <table class="mtks">
          <thead>
            <tr>
              {report?.mtks.map((m) => (
                <th key={m.month}>{m.month}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            <tr>
              {report?.mtks.map((m) => (
                <td key={m.month}>{m.keys}</td>
              ))}
            </tr>
          </tbody>
        </table>
      </section>
      <LiveTail environment={environment} />
    </>
  );
}
