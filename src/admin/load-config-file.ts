import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { resolvePluginSpec } from '../connectors/load-plugins.js';
import { parse } from 'yaml';
import { AppError, type FieldProblem, formatPath, validationError } from '../domain/errors.js';

/**
 * Reads a YAML (or JSON) configuration file and replaces `${VAR}` and `${VAR:-default}` in its
 * string values from the environment, so secrets need not sit in the file. Substitution happens
 * after parsing, so a value can never change the structure of the document.
 */
export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', `cannot read ${path}: ${(cause as Error).message}`, { field: 'file', cause });
  }
  let document: unknown;
  try {
    document = parse(text);
  } catch (cause) {
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', `${path} is not valid YAML: ${(cause as Error).message}`, { field: 'file', cause });
  }
  const problems: FieldProblem[] = [];
  const substituted = substitute(document ?? {}, [], env, problems);
  if (problems.length > 0) throw validationError(problems);
  return withResolvedPlugins(substituted, dirname(path));
}

/** Local plugin paths are relative to the file that names them; other processes get them absolute. */
function withResolvedPlugins(document: unknown, baseDir: string): unknown {
  if (document === null || typeof document !== 'object' || !Array.isArray((document as { plugins?: unknown }).plugins)) return document;
  const plugins = (document as { plugins: unknown[] }).plugins.map((p) => (typeof p === 'string' ? resolvePluginSpec(p, baseDir) : p));
  return { ...(document as Record<string, unknown>), plugins };
}

/** The plugins a loaded configuration names (already resolved). */
export function pluginsOf(document: unknown): string[] {
  const plugins = (document as { plugins?: unknown } | null)?.plugins;
  return Array.isArray(plugins) ? plugins.filter((p): p is string => typeof p === 'string') : [];
}

function substitute(value: unknown, path: PropertyKey[], env: NodeJS.ProcessEnv, problems: FieldProblem[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push({ field: formatPath(path), message: `environment variable ${name} is not set (use \${${name}:-default} for a default)` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => substitute(item, [...path, index], env, problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substitute(item, [...path, key], env, problems)]));
  }
  return value;
}
