import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AppError } from '../domain/errors.js';
import type { AnyConnector } from './connector.js';

/** A local file (`./connectors/my-crm.js`) becomes an absolute path; a package name stays as it is. */
export function resolvePluginSpec(spec: string, baseDir: string): string {
  return spec.startsWith('.') || isAbsolute(spec) ? resolve(baseDir, spec) : spec;
}

function looksLikeConnector(value: unknown): value is AnyConnector {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  return (
    typeof c.type === 'string' &&
    typeof c.limits === 'function' &&
    typeof c.encode === 'function' &&
    typeof c.send === 'function' &&
    typeof c.classify === 'function' &&
    typeof c.createClient === 'function' &&
    typeof (c.settingsSchema as { safeParse?: unknown } | undefined)?.safeParse === 'function'
  );
}

/**
 * Loads connector plugins: local ES modules or npm packages that export `connector` (one) or
 * `connectors` (an array), written against the `Connector` interface this package exports.
 * Package names resolve from the working directory, like the user's own code would.
 */
export async function loadPlugins(specs: readonly string[], baseDir = process.cwd()): Promise<AnyConnector[]> {
  const requireFromCwd = createRequire(resolve(baseDir, 'noop.js'));
  const loaded: AnyConnector[] = [];
  for (const raw of specs) {
    const spec = resolvePluginSpec(raw, baseDir);
    let url: string;
    try {
      url = isAbsolute(spec) ? pathToFileURL(spec).href : pathToFileURL(requireFromCwd.resolve(spec)).href;
    } catch (cause) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `plugin "${raw}": cannot find it (${(cause as Error).message.split('\n')[0] ?? ''}); install the package or fix the path`, { field: 'plugins', cause });
    }
    let module: Record<string, unknown>;
    try {
      module = (await import(url)) as Record<string, unknown>;
    } catch (cause) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `plugin "${raw}" failed to load: ${(cause as Error).message}`, { field: 'plugins', cause });
    }
    const exported = [module.connector, ...(Array.isArray(module.connectors) ? module.connectors : [])].filter((value) => value !== undefined);
    if (exported.length === 0) throw new AppError('FLAGSTREAM_ERR_CONFIG', `plugin "${raw}" exports no \`connector\` or \`connectors\``, { field: 'plugins' });
    for (const candidate of exported) {
      if (!looksLikeConnector(candidate)) {
        throw new AppError('FLAGSTREAM_ERR_CONFIG', `plugin "${raw}": an exported connector lacks type, settingsSchema, limits, createClient, encode, send or classify`, { field: 'plugins' });
      }
      loaded.push(candidate);
    }
  }
  return loaded;
}
