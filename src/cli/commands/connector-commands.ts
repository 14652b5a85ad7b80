import { describeConnector } from '../../connectors/describe-connector.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { createHttpTransport } from '../../delivery/http-transport.js';
import { testDestination } from '../../delivery/test-destination.js';
import { AppError } from '../../domain/errors.js';
import { openSession } from '../connect.js';
import { printJson, printTable } from '../output.js';

/** `flagstream connectors [--json]`: every connector with its settings (JSON Schema), limits and regions. */
export async function connectorsCommand(options: { json?: boolean }): Promise<void> {
  const session = await openSession({ serving: false, logLevel: 'warn' });
  try {
    const descriptions = session.ctx.registry.list().map(describeConnector);
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
  } finally {
    await session.close();
  }
}

/** `flagstream destinations test ID`: sends one clearly marked test impression and prints the answer. */
export async function destinationsTest(id: string, options: { json?: boolean }): Promise<void> {
  const session = await openSession({ serving: false, logLevel: 'warn' });
  const transport = createHttpTransport({ guard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST.split(',')), userAgent: 'flagstream/0.1 (destination test)' });
  try {
    const destination = session.ctx.config.current().destinations.get(id);
    if (destination === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${id}"`, { field: 'id' });
    if (destination.connector === undefined || destination.settingsError !== undefined) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `destination "${id}" is misconfigured: ${destination.settingsError ?? 'unknown connector'}`);
    }
    const report = await testDestination(destination, { http: transport }, session.ctx.clock());
    if (options.json) printJson(report);
    else {
      process.stdout.write(`sent a test impression (flag ${report.impression.split}, key ${report.impression.key}, id ${report.impression.id}) to ${id} (${report.type})${report.validationOnly ? ', to its validation endpoint: nothing was stored' : ''}\n`);
      process.stdout.write(`outcome: ${report.outcome}${report.reason === undefined ? '' : ` (${report.reason})`} in ${report.durationMs} ms\n`);
      if (report.response !== undefined) process.stdout.write(`answer: ${JSON.stringify(report.response)}\n`);
    }
    if (report.outcome !== 'delivered') process.exitCode = 1;
  } finally {
    transport.close();
    await session.close();
  }
}
