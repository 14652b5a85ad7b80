import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { resolvePluginSpec } from '../connectors/load-plugins.js';
import { AppError, type FieldProblem, formatPath, validationError } from '../domain/errors.js';
import { assertShallow } from './validate-configuration.js';

/** A problem of a file, with the file and the line it is on. */
export interface LocatedProblem extends FieldProblem {
  readonly file?: string;
  readonly line?: number;
}

export interface ConfigFile {
  readonly path: string;
  /** The document, `${VAR}`s substituted, local plugin paths made absolute. */
  readonly data: unknown;
  /** Unset `${VAR}`s, each at its path: reported together with the validation's problems. */
  readonly problems: readonly FieldProblem[];
  /** The line of a field path such as `environments[0].destinations[1].settings.url` (of its nearest existing parent when it is missing). */
  lineOf(field: string): number | undefined;
}

/**
 * Reads a YAML (or JSON) configuration file and replaces `${VAR}` and `${VAR:-default}` in its
 * string values from the environment, so secrets need not sit in the file. Substitution happens
 * after parsing, so a value can never change the structure of the document.
 */
export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', `cannot read ${path}: ${(cause as Error).message}`, { field: 'file', cause });
  }
  const lineCounter = new LineCounter();
  let document: ReturnType<typeof parseDocument>;
  let data: unknown;
  try {
    // Duplicate keys are errors (uniqueKeys), and aliases cannot expand into a huge document.
    document = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
    const errors = document.errors.map((error): LocatedProblem => ({ field: 'file', message: error.message.split('\n')[0] ?? error.message, file: path, line: lineCounter.linePos(error.pos[0]).line }));
    if (errors.length > 0) throw validationError(errors);
    data = document.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    if (cause instanceof AppError) throw new AppError(cause.code, `${path} is not valid YAML: ${cause.details[0]?.message ?? cause.message}`, { field: 'file', details: cause.details, cause });
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', `${path} is not valid YAML: ${(cause as Error).message}`, { field: 'file', cause });
  }
  // A self-referring alias or absurd nesting is refused before anything walks the document.
  assertShallow(data);
  const problems: FieldProblem[] = [];
  const substituted = substitute(data ?? {}, [], env, problems);
  return {
    path,
    data: withResolvedPlugins(substituted, dirname(path)),
    problems,
    lineOf: (field) => lineOfPath(document.contents, parseFieldPath(field), (offset) => lineCounter.linePos(offset).line),
  };
}

/** `environments[0].settings.url` → ['environments', 0, 'settings', 'url']. */
export function parseFieldPath(field: string): PropertyKey[] {
  return [...field.matchAll(/\[(\d+)\]|([^.[\]]+)/g)].map(([, index, key]) => (index === undefined ? (key ?? '') : Number(index)));
}

function lineOfPath(root: Node | null, path: readonly PropertyKey[], lineAt: (offset: number) => number): number | undefined {
  let node: unknown = root;
  let line = root?.range ? lineAt(root.range[0]) : undefined;
  for (const part of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => (isScalar(item.key) ? String(item.key.value) : item.key) === String(part));
      if (pair === undefined) break;
      const key = pair.key as Node | null;
      if (key?.range) line = lineAt(key.range[0]);
      node = pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      const item = node.items[part] as Node | undefined;
      if (item?.range === undefined || item.range === null) break;
      line = lineAt(item.range[0]);
      node = item;
    } else break;
  }
  return line;
}

/** Adds each problem's line in the file; the problems are then listed in file order. */
export function withLines(error: AppError, file: ConfigFile): AppError {
  if (error.code !== 'FLAGSTREAM_ERR_VALIDATION' || error.details.length === 0) return error;
  const details: LocatedProblem[] = error.details
    .map((problem) => ({ ...problem, file: file.path, line: (problem as LocatedProblem).line ?? file.lineOf(problem.field) }))
    .sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return new AppError(error.code, error.message, { field: error.field, details, cause: error });
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
