import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { logRedactPaths } from './redact.js';

/** `auto`: readable lines on a terminal, JSON lines otherwise. */
export type LogFormat = 'auto' | 'json' | 'pretty';

export function createLogger(level: string, destination?: NodeJS.WritableStream, format: LogFormat = 'auto'): Logger {
  const out = destination ?? process.stdout;
  const terminal = (out as { isTTY?: boolean }).isTTY === true;
  // pino redacts before the line is written, so the readable format shows no secrets either.
  const stream = format === 'pretty' || (format === 'auto' && terminal) ? PinoPretty({ destination: out, sync: true, colorize: terminal, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' }) : out;
  return pino({ level, base: { service: 'flagstream' }, redact: { paths: logRedactPaths, censor: '[redacted]' } }, stream);
}
