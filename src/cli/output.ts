import { AppError } from '../domain/errors.js';

/** Prints an error the way a CLI user can act on: the message, each field problem, and exit code 1 (2 for usage). */
export function reportCliError(error: unknown): number {
  if (error instanceof AppError) {
    process.stderr.write(`error: ${error.details.length > 1 ? `${error.details.length} problems` : error.message}\n`);
    if (error.details.length > 1) for (const problem of error.details) process.stderr.write(`  ${problem.field}: ${problem.message}\n`);
    return 1;
  }
  process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
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
