import { closestName } from '../../admin/unknown-keys.js';
import { readEnv } from '../../app-config.js';
import { describeConnector } from '../../connectors/describe-connector.js';
import { loadPlugins } from '../../connectors/load-plugins.js';
import { ConnectorRegistry } from '../../connectors/registry.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { createHttpTransport } from '../../delivery/http-transport.js';
import { testDestination } from '../../delivery/test-destination.js';
import { AppError } from '../../domain/errors.js';
import { openSession, storedPluginsIfReachable } from '../connect.js';
import { printJson, printTable } from '../output.js';

/**
 * `flagstream connectors [--json]`: every connector with its settings (JSON Schema), limits and
 * regions. Needs no Redis: plugins recorded by `apply` are added when a Redis answers.
 */
export async function connectorsCommand(options: { json?: boolean }): Promise<void> {
  const env = readEnv();
  const registry = new ConnectorRegistry();
  const plugins = await storedPluginsIfReachable(env);
  if (plugins === undefined) process.stderr.write('note: no Redis answered, so connector plugins recorded by `flagstream apply` are not listed\n');
  for (const connector of await loadPlugins(plugins ?? [])) registry.register(connector);
  const descriptions = registry.list().map(describeConnector);
  if (options.json) return printJson({ connectors: descriptions });
  printTable(
    descriptions.map((d) => ({
      type: d.type,
      name: d.displayName,
      items: d.limits.maxItemsPerRequest,
      bytes: d.limits.maxBytesPerRequest,
      wait: `${d.limits.maxBatchWaitMs}ms`,
      regions: Object.keys(d.regions).join(' '),
      settings: Object.entries((d.settings as { properties?: Record<string, unknown>; required?: string[] }).properties ?? {})
        .map(([name]) => (((d.settings as { required?: string[] }).required ?? []).includes(name) ? `${name}*` : name))
        .join(' '),
    })),
    ['type', 'name', 'items', 'bytes', 'wait', 'regions', 'settings'],
  );
  process.stdout.write('(* required; `flagstream connectors --json` for the full settings schemas)\n');
}

/**
 * `flagstream destinations test ID`: sends one clearly marked test impression and prints the
 * answer. It runs in this process, from this machine's network, with this process's
 * FLAGSTREAM_DESTINATION_ALLOWLIST: set it as for the server (or test on the server with
 * `POST /admin/v1/destinations/{id}/test`).
 */
export async function destinationsTest(id: string, options: { json?: boolean }): Promise<void> {
  const session = await openSession({ secrets: true, plugins: [] });
  const allowlist = session.env.FLAGSTREAM_DESTINATION_ALLOWLIST;
  const transport = createHttpTransport({ guard: createDestinationGuard(allowlist.split(',')), userAgent: 'flagstream/0.1 (destination test)' });
  try {
    const snapshot = await session.snapshot();
    const destination = snapshot.destinations.get(id);
    if (destination === undefined) {
      const suggestion = closestName(id, [...snapshot.destinations.keys()]);
      throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${id}"${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`, { field: 'id' });
    }
    if (destination.connector === undefined || destination.settingsError !== undefined) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `destination "${id}" is misconfigured: ${destination.settingsError ?? 'unknown connector'}`);
    }
    const report = await testDestination(destination, { http: transport }, Date.now());
    if (options.json) printJson(report);
    else {
      process.stdout.write(`sent a test impression (flag ${report.impression.split}, key ${report.impression.key}, id ${report.impression.id}) to ${id} (${report.type})${report.validationOnly ? ', to its validation endpoint: nothing was stored' : ''}\n`);
      process.stdout.write(`outcome: ${report.outcome}${report.reason === undefined ? '' : ` (${report.reason})`} in ${report.durationMs} ms\n`);
      if (report.response !== undefined) process.stdout.write(`answer: ${JSON.stringify(report.response)}\n`);
      if (JSON.stringify(report.response ?? '').includes('DESTINATION_NOT_ALLOWED')) {
        process.stdout.write(
          `note: this test runs here, with FLAGSTREAM_DESTINATION_ALLOWLIST=${JSON.stringify(allowlist)}; set it as the server has it, or test from the server: POST /admin/v1/destinations/${id}/test\n`,
        );
      }
    }
    if (report.outcome !== 'delivered') process.exitCode = 1;
  } finally {
    transport.close();
    await session.close();
  }
}
