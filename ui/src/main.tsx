import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, type Environment, login, logout, whenUnauthorized } from './api.js';
import { DeadLettersView } from './dead-letters.js';
import { ExportView } from './export.js';
import { MonitoringView } from './monitoring.js';
import { OverviewView } from './overview.js';

type View = 'overview' | 'monitoring' | 'dead-letters' | 'export';
const views: { id: View; label: string }[] = [
  { id: 'overview', label: 'Environment' },
  { id: 'monitoring', label: 'Monitoring' },
  { id: 'dead-letters', label: 'Dead letters' },
  { id: 'export', label: 'Export' },
];

function LoginForm({ onLogin }: { onLogin: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string>();
  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      await login(token);
      setToken('');
      onLogin();
    } catch (caught) {
      setError((caught as Error).message);
    }
  };
  return (
    <section class="login">
      <h2>flagstream dashboard</h2>
      {/* POST and no field name: even without the script, a submit never puts the token in a URL. */}
      <form method="post" action="/ui/login" onSubmit={submit} class="row">
        <label>
          Admin token <input type="password" autocomplete="current-password" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        </label>
        <button type="submit">Log in</button>
      </form>
      {error && <p class="error">{error}</p>}
    </section>
  );
}

function App() {
  const [authenticated, setAuthenticated] = useState<boolean>();
  const [environments, setEnvironments] = useState<Environment[]>([]);
  const [environmentId, setEnvironmentId] = useState<string>();
  const [view, setView] = useState<View>('overview');
  const [version, setVersion] = useState(0);

  useEffect(() => whenUnauthorized(() => setAuthenticated(false)), []);
  useEffect(() => {
    api<{ environments: Environment[] }>('GET', '/environments').then(
      (answer) => {
        setAuthenticated(true);
        setEnvironments(answer.environments);
        setEnvironmentId((current) => current ?? answer.environments[0]?.id);
      },
      () => undefined,
    );
  }, [authenticated, version]);

  if (authenticated === undefined) return null;
  if (!authenticated) return <LoginForm onLogin={() => setAuthenticated(true)} />;
  const environment = environments.find((e) => e.id === environmentId);
  return (
    <>
      <header>
        <h1>flagstream</h1>
        <nav>
          {views.map((v) => (
            <button key={v.id} aria-current={view === v.id ? 'page' : undefined} onClick={() => setView(v.id)}>
              {v.label}
            </button>
          ))}
          <a href="/ui/queues/">Queues</a>
        </nav>
        <label>
          Environment{' '}
          <select name="environment" value={environmentId} onChange={(e) => setEnvironmentId(e.currentTarget.value)}>
            {environments.map((e) => (
              <option key={e.id} value={e.id}>
                {e.id}
              </option>
            ))}
          </select>
        </label>
        <button onClick={() => void logout().then(() => setAuthenticated(false))}>Log out</button>
      </header>
      <main>
        {environment === undefined ? (
          <section>No environment yet: create one with `flagstream apply` or the admin API.</section>
        ) : view === 'overview' ? (
          <OverviewView environment={environment} changed={() => setVersion((n) => n + 1)} />
        ) : view === 'monitoring' ? (
          <MonitoringView environment={environment} />
        ) : view === 'dead-letters' ? (
          <DeadLettersView environment={environment} />
        ) : (
          <ExportView key={environment.id} environment={environment} />
        )}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
