import { createInterface } from 'node:readline/promises';
import type { ConfigChange, FieldChange } from '../admin/config-service.js';
import type { LocatedProblem } from '../admin/load-config-file.js';
import { AppError } from '../domain/errors.js';

/**
 * Prints an error the way a CLI user can act on it: one line, then each field problem (with its
 * file and line when it comes from a file); the stack only at FLAGSTREAM_LOG_LEVEL=debug.
 * Returns the exit code: 1.
 */
export function reportCliError(error: unknown, options: { debug?: boolean } = {}): number {
  if (error instanceof AppError) {
    const located = error.details.some((problem) => (problem as LocatedProblem).line !== undefined);
    const listed = error.details.length > 1 || located;
    const count = error.details.length > 1 ? `${error.details.length} problems` : '1 problem';
    // A file that does not parse says so; a configuration that does not validate lists its problems.
    process.stderr.write(`error: ${listed ? (error.field === 'file' ? `${error.message.replace(/: .*$/, '')} (${count})` : count) : error.message}\n`);
    if (listed) {
      for (const problem of error.details as readonly LocatedProblem[]) {
        const where = problem.line === undefined ? '' : `${problem.file ?? 'line'}:${problem.line}: `;
        process.stderr.write(`  ${where}${problem.field === 'file' ? '' : `${problem.field}: `}${problem.message}\n`);
      }
    }
  } else {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  if (options.debug && error instanceof Error && error.stack !== undefined) process.stderr.write(`${error.stack}\n`);
  return 1;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A plain table for humans; scripts use --json. */
export function printTable(rows: readonly Record<string, unknown>[], columns: readonly string[]): void {
  const cell = (value: unknown) => (value === undefined || value === null ? '' : String(value));
  // A reduce, not Math.max(...): a listing may have more rows than a call has room for arguments.
  const widths = columns.map((column) => rows.reduce((widest, row) => Math.max(widest, cell(row[column]).length), column.length));
  const line = (values: readonly string[]) => values.map((value, index) => value.padEnd(widths[index] ?? 0)).join('  ').trimEnd();
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((column) => cell(row[column])))}\n`);
}

function showValue(value: unknown): string {
  if (value === undefined) return '(unset)';
  if (typeof value === 'string' && /^[\w.:/@*?+-]+$/.test(value)) return value;
  return JSON.stringify(value);
}

export function describeFieldChange(change: FieldChange): string {
  if (change.secret) return `${change.path}: [redacted] (${change.before === undefined ? 'set' : change.after === undefined ? 'removed' : 'changed'})`;
  return `${change.path}: ${showValue(change.before)} → ${showValue(change.after)}`;
}

/** `+` create, `~` update (with each field that changes), `-` delete. */
export function printChanges(changes: readonly ConfigChange[], out: NodeJS.WritableStream = process.stdout): void {
  const sign = { create: '+', update: '~', delete: '-' } as const;
  for (const change of changes) {
    const name = change.kind === 'plugin' ? change.id : change.kind === 'environment' ? change.environmentId : `${change.environmentId}/${change.id}`;
    out.write(`${sign[change.action]} ${change.kind} ${name}\n`);
    for (const field of change.fields ?? []) out.write(`    ${describeFieldChange(field)}\n`);
  }
}

/**
 * The safety catch of destructive commands: on a terminal, ask; elsewhere (scripts, CI, pipes)
 * only `--yes` goes ahead. Throws (nothing done) unless confirmed.
 */
export async function confirm(
  what: string,
  options: { yes?: boolean | undefined; input?: NodeJS.ReadableStream & { isTTY?: boolean }; output?: NodeJS.WritableStream } = {},
): Promise<void> {
  if (options.yes === true) return;
  const input = options.input ?? process.stdin;
  if (input.isTTY !== true) {
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', `${what}; nothing was changed: run it again with --yes to confirm (there is no terminal to ask on)`, { field: 'yes' });
  }
  const prompt = createInterface({ input, output: options.output ?? process.stderr });
  try {
    const answer = await prompt.question(`${what}. Go ahead? [y/N] `);
    if (!/^\s*y(es)?\s*$/i.test(answer)) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'not confirmed; nothing was changed', { field: 'yes' });
  } finally {
    prompt.close();
  }
}
