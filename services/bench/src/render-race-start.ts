import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { REPO_ROOT } from '@pitwall/testkit';
import { raceStartReportFile, raceStartRunFile } from './suites/race-start/paths.js';
import { renderRaceStartReport } from './suites/race-start/report.js';
import { readRunFile } from './suites/race-start/run-file.js';

// `node services/bench/dist/render-race-start.js [run.json] [out.md]`: renders docs/race-start.md again
// from the figures a race-start run saved (default .pitwall/bench/race-start/run.json), e.g. after the
// report or the projection changed, without running the stack again. A quick run's figures render next
// to them, as the run itself does.

const [input, output] = process.argv.slice(2);
const runFile = input === undefined ? raceStartRunFile() : resolve(input);
const { quick, run } = readRunFile(runFile);
const file = output === undefined ? raceStartReportFile(quick) : resolve(output);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, renderRaceStartReport(run));
process.stdout.write(`${relative(REPO_ROOT, file)} rendered from ${relative(REPO_ROOT, runFile)}\n`);
