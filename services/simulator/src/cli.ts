#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { startSimulation } from './simulation.js';

// `node services/simulator/dist/cli.js --devices 50 --rate 1 --host 127.0.0.1 --port 5027 [--udp]`
// Prints one JSON line of statistics every --stats-every seconds and a final one on exit.

const USAGE = `usage: pitwall-simulator [options]
  --devices N             simulated trackers (default 10)
  --rate R                records per second per device (default 1)
  --host H --port P       ingestion address (default 127.0.0.1:5027)
  --udp                   send over UDP instead of TCP
  --first-index I         IMEI index of the first device (default 0; IMEI = 356307040000000 + index)
  --records-per-packet N  most records per packet (default 25)
  --duration S            stop after S seconds (default: run until SIGINT/SIGTERM)
  --drain-timeout S       on stop, wait up to S seconds for outstanding records to be acknowledged (default 0)
  --stats-every S         statistics line period in seconds (default 5; 0 = only at the end)`;

function numberOption(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`simulator: --${name} must be a non-negative number, got ${value}\n${USAGE}\n`);
    process.exit(64);
  }
  return n;
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      devices: { type: 'string' },
      rate: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      udp: { type: 'boolean' },
      'first-index': { type: 'string' },
      'records-per-packet': { type: 'string' },
      duration: { type: 'string' },
      'drain-timeout': { type: 'string' },
      'stats-every': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (err) {
  process.stderr.write(`simulator: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
  process.exit(64);
}
const { values } = parsed;
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const options = {
  devices: numberOption(values.devices, 'devices', 10),
  rate: numberOption(values.rate, 'rate', 1),
  host: values.host ?? '127.0.0.1',
  port: numberOption(values.port, 'port', 5027),
  transport: values.udp ? ('udp' as const) : ('tcp' as const),
  firstIndex: numberOption(values['first-index'], 'first-index', 0),
  maxRecordsPerPacket: numberOption(values['records-per-packet'], 'records-per-packet', 25),
  trackAcked: false,
};
const durationS = numberOption(values.duration, 'duration', 0);
const drainTimeoutS = numberOption(values['drain-timeout'], 'drain-timeout', 0);
const statsEveryS = numberOption(values['stats-every'], 'stats-every', 5);

let simulation;
try {
  simulation = startSimulation(options);
} catch (err) {
  process.stderr.write(`simulator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(64);
}
const sim = simulation;
const print = (event: string) => process.stdout.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...sim.stats() })}\n`);
process.stdout.write(
  `${JSON.stringify({ event: 'started', devices: options.devices, rate: options.rate, transport: options.transport, target: `${options.host}:${options.port}` })}\n`,
);
const statsTimer = statsEveryS > 0 ? setInterval(() => print('stats'), statsEveryS * 1000) : undefined;

let stopping = false;
async function stop(reason: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(statsTimer);
  if (drainTimeoutS > 0) await sim.drain(drainTimeoutS * 1000);
  await sim.stop();
  print(`stopped:${reason}`);
  process.exit(0);
}
process.once('SIGINT', () => void stop('SIGINT'));
process.once('SIGTERM', () => void stop('SIGTERM'));
if (durationS > 0) setTimeout(() => void stop('duration'), durationS * 1000);
