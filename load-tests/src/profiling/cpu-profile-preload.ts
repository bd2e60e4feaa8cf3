import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

// Preloaded into a service (NODE_OPTIONS=--import=<this file>; Node 20 refuses --cpu-prof there) to
// profile exactly the window under load: the first SIGUSR2 starts V8's sampling CPU profiler, the
// next one stops it and writes <PITWALL_CPU_PROFILE_DIR>/<PITWALL_CPU_PROFILE_NAME>-<pid>.cpuprofile
// (the format of --cpu-prof and Chrome DevTools). Without PITWALL_CPU_PROFILE_DIR it does nothing.

const dir = process.env.PITWALL_CPU_PROFILE_DIR;
const name = process.env.PITWALL_CPU_PROFILE_NAME ?? 'process';
const intervalUs = Number(process.env.PITWALL_CPU_PROFILE_INTERVAL_US ?? 1000);

if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      session.post('Profiler.enable', () => {
        session.post('Profiler.setSamplingInterval', { interval: intervalUs }, () => {
          session.post('Profiler.start');
        });
      });
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, result) => {
      if (err) {
        process.stderr.write(`cpu profile: ${err.message}\n`);
        return;
      }
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
      process.stderr.write(`cpu profile written to ${dir}\n`);
    });
  });
}
