export { TRACK, TRACK_LENGTH_M, trackStateAt, type LatLon, type TrackState } from './track.js';
export { simulatorImei } from './imei.js';
export { startSimulation, type AckedRecord, type Simulation, type SimulationOptions, type SimulationStats } from './simulation.js';
