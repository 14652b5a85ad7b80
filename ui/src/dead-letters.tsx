import { useEffect, useState } from 'preact/hooks';
import { api, type DeadLetter, type DeadLetterSummary, type Environment, type ReplayReport } from './api.js';

type Selection = { ids: string[] } | { destination: string };

export function DeadLettersView({ environment }: { environment: Environment }) {
  const [destination, setDestination] = useState('');
  const [status, setStatus] = useState('pending');
  const [list, setList] = useState<DeadLetterSummary[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [shown, setShown] = useState<DeadLetter>();
  const [result, setResult] = useState<string>();
  const [version, setVersion] = useState(0);

  useEffect(() => {
    const query = new URLSearchParams({ limit: '200', ...(destination ? { destination } : {}), ...(status ? { status } : {}) });
    void api<{ deadLetters: DeadLetterSummary[] }>('GET', `/dead-letters?${query}`).then(
      (answer) => setList(answer.deadLetters.filter((d) => d.environmentId === environment.id)),
      (caught: unknown) => setResult((caught as Error).message),
    );
  }, [destination, status, version, environment.id]);

  const replay = async (selection: Selection) => {
    try {
      const report = await api<ReplayReport>('POST', '/dead-letters/replay', selection);
      setResult(`Replayed ${report.deadLetters} dead letter(s), ${report.impressions} impression(s)${report.skipped.length > 0 ? `; ${report.skipped.length} skipped` : ''}.`);
    } catch (caught) {
      setResult(`Replay failed: ${(caught as Error).message}`);
    }
    setSelected(new Set());
    setShown(undefined);
    setVersion((n) => n + 1);
  };
  const purge = async (selection: Selection, what: string) => {
    if (!window.confirm(`Purge ${what}? Their impressions are deleted for good.`)) return;
    try {
      const report = await api<{ purged: number }>('POST', '/dead-letters/purge', selection);
      setResult(`Purged ${report.purged} dead letter(s).`);
    } catch (caught) {
      setResult(`Purge failed: ${(caught as Error).message}`);
    }
    setSelected(new Set());
    setShown(undefined);
    setVersion((n) => n + 1);
  };
  const toggle = (id: string) =>
    setSelected((current) => {
      const next = new Set(current);
      if (!next.delete(id)) next.add(id);
      return next;
    });

  return (
    <>
      <section>
        <h2>Dead letters</h2>
        <div class="row">
          <label>
            Destination{' '}
            <select name="destination" value={destination} onChange={(e) => setDestination(e.currentTarget.value)}>
              <option value="">all</option>
              {environment.destinations.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.id}
                </option>
              ))}
            </select>
          </label>
          <label>
            Status{' '}
            <select name="status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
              <option value="pending">pending</option>
              <option value="replayed">replayed</option>
              <option value="">any</option>
            </select>
          </label>
          <button onClick={() => setVersion((n) => n + 1)}>Refresh</button>
          <button disabled={selected.size === 0} onClick={() => void replay({ ids: [...selected] })}>
            Replay selected ({selected.size})
          </button>
          <button class="danger" disabled={selected.size === 0} onClick={() => void purge({ ids: [...selected] }, `${selected.size} selected dead letter(s)`)}>
            Purge selected
          </button>
          {destination && (
            <>
              <button onClick={() => void replay({ destination })}>Replay all of {destination}</button>
              <button class="danger" onClick={() => void purge({ destination }, `every dead letter of ${destination}`)}>
                Purge all of {destination}
              </button>
            </>
          )}
        </div>
        {result && <p class="notice result">{result}</p>}
        <table class="dead-letters">
          <thead>
            <tr>
              <th />
              <th>Id</th>
              <th>Destination</th>
              <th>Reason</th>
              <th>Last answer</th>
              <th>Impressions</th>
              <th>Status</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {list.length === 0 && (
              <tr>
                <td colSpan={8}>No dead letters.</td>
              </tr>
            )}
            {list.map((letter) => (
              <tr key={letter.id} data-dead-letter={letter.id} class={shown?.id === letter.id ? 'selected' : ''}>
                <td>
                  <input type="checkbox" aria-label={`select ${letter.id}`} checked={selected.has(letter.id)} onChange={() => toggle(letter.id)} />
                </td>
                <td>
                  <button onClick={() => void api<DeadLetter>('GET', `/dead-letters/${encodeURIComponent(letter.id)}`).then(setShown)}>{letter.id}</button>
                </td>
                <td>{letter.destinationId}</td>
                <td>{letter.reason}</td>
                <td>{letter.error?.message ?? '—'}</td>
                <td>{letter.impressionCount}</td>
                <td>{letter.status}</td>
                <td>{new Date(letter.createdAt).toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      {shown && (
        <section class="dead-letter">
          <h2>Dead letter {shown.id}</h2>
          <p>
            Destination <strong>{shown.destinationId}</strong>, reason <strong>{shown.reason}</strong>, {shown.attempts} attempt(s), {shown.status}.
          </p>
          <h3>Last answer</h3>
          <pre>{JSON.stringify(shown.error, null, 2)}</pre>
          <h3>Items ({shown.impressions.length})</h3>
          <pre>{JSON.stringify(shown.impressions, null, 2)}</pre>
          <div class="row">
            <button onClick={() => void replay({ ids: [shown.id] })}>Replay this dead letter</button>
            <button class="danger" onClick={() => void purge({ ids: [shown.id] }, `dead letter ${shown.id}`)}>
              Purge
            </button>
          </div>
        </section>
      )}
    </>
  );
}
