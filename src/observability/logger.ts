import { pino, type Logger } from 'pino';
import { logRedactPaths } from './redact.js';

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'flagstream' }, redact: { paths: logRedactPaths, censor: '[redacted]' } }, destination ?? process.stdout);
}
