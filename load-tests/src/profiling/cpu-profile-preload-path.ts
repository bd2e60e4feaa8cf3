import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The built CPU-profiler preload (cpu-profile-preload.ts): start a Node service with
 * NODE_OPTIONS=--import=<this> and PITWALL_CPU_PROFILE_DIR set, then SIGUSR2 starts and stops it.
 */
export const CPU_PROFILE_PRELOAD = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'profiling', 'cpu-profile-preload.js');
