import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** JSON logs on stdout, one line per event, with the service name on every line. */
export function createLogger(service: string, level: LogLevel = 'info'): Logger {
  return pino({
    name: service,
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
