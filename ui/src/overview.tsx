import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Connector, type Destination, type DestinationHealth, type Environment, type JsonSchema, type Ledger, type TestAnswer } from './api.js';

const pollMs = 3000;

/** healthy / retrying / paused / circuit open / disabled, from the configuration and the health record. */
function statusOf(destination: Destination, health: DestinationHealth | undefined): string {
  if (!destination.enabled) return 'disabled';
  if (health?.state === 'paused') return 'paused';
  if (health?.state === 'open') return 'circuit open';
  if ((health?.consecutiveFailures ?? 0) > 0) return 'retrying';
  return 'healthy';
}

function TestAnswerView({ answer }: { answer: TestAnswer | string }) {
  if (typeof answer === 'string') return <p class="error">{answer}</p>;
  return (
    <div class="test-answer">
      <p>
        Test event: <strong>{answer.outcome}</strong>
        {answer.reason ? ` — ${answer.reason}` : ''}
        {answer.durationMs !== undefined ? ` (${answer.durationMs} ms)` : ''}
      </p>
      {answer.response && (
        <pre>
          HTTP {answer.response.status}
          {'\n'}
          {answer.response.body ?? ''}
        </pre>
      )}
    </div>
  );
}

export function OverviewView({ environment, changed }: { environment: Environment; changed: () => void }) {
  const [health, setHealth] = useState<DestinationHealth[]>([]);
  const [ledger, setLedger] = useState<Ledger>();
  const [rates, setRates] = useState<Record<string, number>>({});
  const [answers, setAnswers] = useState<Record<string, TestAnswer | string>>({});
  const [error, setError] = useState<string>();
  const previous = useRef<{ at: number; delivered: Record<string, number> }>(undefined);

  useEffect(() => {
    let stopped = false;
    const refresh = async () => {
      const [healthAnswer, ledgerAnswer] = await Promise.all([api<{ destinations: DestinationHealth[] }>('GET', '/health/destinations'), api<Ledger>('GET', `/ledger?environment=${encodeURIComponent(environment.id)}`)]);
      if (stopped) return;
      setHealth(healthAnswer.destinations);
      setLedger(ledgerAnswer);
      // Throughput: deliveries since the previous poll.
      const now = Date.now();
      const delivered = Object.fromEntries((ledgerAnswer.environments[0]?.destinations ?? []).map((d) => [d.destinationId, d.delivered]));
      const before = previous.current;
      if (before !== undefined) {
        const minutes = (now - before.at) / 60_000;
        setRates(Object.fromEntries(Object.entries(delivered).map(([id, count]) => [id, Math.max(0, count - (before.delivered[id] ?? count)) / minutes])));
      }
      previous.current = { at: now, delivered };
    };
    const tick = () => void refresh().catch((caught: unknown) => setError((caught as Error).message));
    tick();
    const timer = setInterval(tick, pollMs);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [environment.id, environment]);

  const act = async (call: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await call();
      changed();
    } catch (caught) {
      setError((caught as Error).message);
    }
  };
  const sendTest = async (id: string) => {
    setAnswers((a) => ({ ...a, [id]: { outcome: 'sending…' } }));
    const answer = await api<TestAnswer>('POST', `/destinations/${encodeURIComponent(id)}/test`).catch((caught: unknown) => (caught as Error).message);
    setAnswers((a) => ({ ...a, [id]: answer }));
  };
  const ledgerOf = (id: string) => ledger?.environments[0]?.destinations.find((d) => d.destinationId === id);

  return (
    <>
      {error && <p class="error notice">{error}</p>}
      <section>
        <h2>Flags</h2>
        <table class="flags">
          <thead>
            <tr>
              <th>Flag</th>
              <th>Traffic type</th>
              <th>Tracking</th>
            </tr>
          </thead>
          <tbody>
            {environment.flags.map((flag) => (
              <tr key={flag.name} data-flag={flag.name}>
                <td>{flag.name}</td>
                <td>{flag.trafficType}</td>
                <td>
                  <label>
                    <input
                      type="checkbox"
                      role="switch"
                      aria-label={`track impressions of ${flag.name}`}
                      checked={flag.trackImpressions}
                      onChange={(e) => void act(() => api('PATCH', `/environments/${encodeURIComponent(environment.id)}/flags/${encodeURIComponent(flag.name)}`, { trackImpressions: e.currentTarget.checked }))}
                    />{' '}
                    {flag.trackImpressions ? 'on' : 'off'}
                  </label>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section>
        <h2>Destinations</h2>
        <table class="destinations">
          <thead>
            <tr>
              <th>Destination</th>
              <th>Type</th>
              <th>Status</th>
              <th>Last error</th>
              <th>Delivered</th>
              <th>Throughput</th>
              <th>Backlog</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {environment.destinations.map((destination) => {
              const record = health.find((h) => h.destinationId === destination.id);
              const status = statusOf(destination, record);
              const id = encodeURIComponent(destination.id);
              const answer = answers[destination.id];
              return (
                <>
                  <tr key={destination.id} data-destination={destination.id}>
                    <td>{destination.id}</td>
                    <td>{destination.type}</td>
                    <td>
                      <span class={`status status-${status.replace(' ', '-')}`}>{status}</span>
                      {record?.reason && <div>{record.reason}</div>}
                    </td>
                    <td>{record?.lastError ? `${record.lastError}${record.lastErrorAt ? ` (${new Date(record.lastErrorAt).toLocaleTimeString()})` : ''}` : '—'}</td>
                    <td>{ledgerOf(destination.id)?.delivered ?? '—'}</td>
                    <td>{rates[destination.id] === undefined ? '—' : `${rates[destination.id]?.toFixed(0)}/min`}</td>
                    <td>{ledgerOf(destination.id)?.pending ?? '—'}</td>
                    <td class="row">
                      {destination.enabled ? <button onClick={() => void act(() => api('POST', `/destinations/${id}/disable`))}>Disable</button> : <button onClick={() => void act(() => api('POST', `/destinations/${id}/enable`))}>Enable</button>}
                      {record?.state === 'paused' ? <button onClick={() => void act(() => api('POST', `/destinations/${id}/resume`))}>Resume</button> : <button onClick={() => void act(() => api('POST', `/destinations/${id}/pause`, {}))}>Pause</button>}
                      <button onClick={() => void sendTest(destination.id)}>Send test event</button>
                    </td>
                  </tr>
                  {answer !== undefined && (
                    <tr key={`${destination.id}-test`}>
                      <td colSpan={8}>
                        <TestAnswerView answer={answer} />
                      </td>
                    </tr>
                  )}
                </>
              );
            })}
          </tbody>
        </table>
      </section>
      <DestinationForm environment={environment} created={changed} />
    </>
  );
}

/** A settings form generated from the connector's JSON Schema; secret settings are write-only password fields. */
function DestinationForm({ environment, created }: { environment: Environment; created: () => void }) {
  const [connectors, setConnectors] = useState<Connector[]>([]);
  const [type, setType] = useState('webhook');
  const [id, setId] = useState('');
  const [values, setValues] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string>();
  const [createdId, setCreatedId] = useState<string>();
  const [answer, setAnswer] = useState<TestAnswer | string>();

  useEffect(() => {
    void api<{ connectors: Connector[] }>('GET', '/connectors').then((a) => setConnectors(a.connectors));
  }, []);
  const connector = connectors.find((c) => c.type === type);
  const properties = Object.entries(connector?.settings.properties ?? {});
  const required = new Set(connector?.settings.required ?? []);

  const settingsFrom = (): Record<string, unknown> => {
    const settings: Record<string, unknown> = {};
    for (const [name, schema] of properties) {
      const raw = values[name]?.trim() ?? '';
      if (raw === '') continue;
      if (schema.type === 'integer' || schema.type === 'number') settings[name] = Number(raw);
      else if (schema.type === 'boolean') settings[name] = raw === 'true';
      else if (schema.type === 'object' || schema.type === 'array') settings[name] = JSON.parse(raw) as unknown;
      else settings[name] = raw;
    }
    return settings;
  };
  const submit = async (event: Event) => {
    event.preventDefault();
    setMessage(undefined);
    setAnswer(undefined);
    try {
      await api('POST', `/environments/${encodeURIComponent(environment.id)}/destinations`, { id, type, settings: settingsFrom() });
      setCreatedId(id);
      setMessage(`Destination "${id}" added.`);
      // Secrets are not kept in the page once sent.
      setValues({});
      setId('');
      created();
    } catch (caught) {
      setMessage((caught as Error).message);
    }
  };
  const field = (name: string, schema: JsonSchema) => {
    const secret = connector?.secretSettings.includes(name) === true;
    const common = { id: `setting-${name}`, name, value: values[name] ?? '', onInput: (e: { currentTarget: { value: string } }) => setValues((v) => ({ ...v, [name]: e.currentTarget.value })) };
    if (schema.enum) {
      return (
        <select {...common}>
          <option value="" />
          {schema.enum.map((option) => (
            <option key={String(option)}>{String(option)}</option>
          ))}
        </select>
      );
    }
    if (schema.type === 'object' || schema.type === 'array') return <textarea {...common} rows={2} placeholder={secret ? 'write-only (JSON)' : 'JSON'} />;
    if (secret) return <input {...common} type="password" autocomplete="off" placeholder="write-only" />;
    if (schema.type === 'integer' || schema.type === 'number') return <input {...common} type="number" min={schema.minimum} max={schema.maximum} placeholder={schema.default === undefined ? '' : String(schema.default)} />;
    return <input {...common} type="text" required={required.has(name)} />;
  };

  return (
    <section>
      <h2>Add a destination</h2>
      <form class="settings" onSubmit={submit}>
        <label for="destination-type">Connector</label>
        <select id="destination-type" name="type" value={type} onChange={(e) => (setType(e.currentTarget.value), setValues({}))}>
          {connectors.map((c) => (
            <option key={c.type} value={c.type}>
              {c.displayName} ({c.type})
            </option>
          ))}
        </select>
        <label for="destination-id">Destination id</label>
        <input id="destination-id" name="id" required value={id} onInput={(e) => setId(e.currentTarget.value)} />
        {properties.map(([name, schema]) => (
          <>
            <label key={`${name}-label`} for={`setting-${name}`}>
              {name}
              {required.has(name) ? ' *' : ''}
            </label>
            {field(name, schema)}
            {schema.description && <small key={`${name}-help`}>{schema.description}</small>}
          </>
        ))}
        <span />
        <div class="row">
          <button type="submit">Add destination</button>
          {createdId && (
            <button type="button" onClick={() => void api<TestAnswer>('POST', `/destinations/${encodeURIComponent(createdId)}/test`).then(setAnswer, (caught: unknown) => setAnswer((caught as Error).message))}>
              Send test event to {createdId}
            </button>
          )}
        </div>
      </form>
      {message && <p class="notice">{message}</p>}
      {answer !== undefined && <TestAnswerView answer={answer} />}
    </section>
  );
}
