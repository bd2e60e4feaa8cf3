import { startSimulation, TRACK, type Simulation } from '@pitwall/simulator';
import type { TrackPoints } from './map-server.js';

export interface RaceOptions {
  host: string;
  port: number;
  /** Cars: device i has IMEI simulatorImei(i), as the seed entered them. */
  devices: number;
  /** Time between two fixes of one car. */
  fixIntervalMs: number;
}

export interface Race {
  simulation: Simulation;
  track: TrackPoints;
  stop(): Promise<void>;
}

/** The simulated Teltonika trackers driving laps into ingestion, and the track they drive. */
export function startRace(options: RaceOptions): Race {
  const simulation = startSimulation({
    host: options.host,
    port: options.port,
    devices: options.devices,
    rate: 1000 / options.fixIntervalMs,
    trackAcked: false,
  });
  return { simulation, track: TRACK.map((p): [number, number] => [p.lat, p.lon]), stop: () => simulation.stop() };
}
