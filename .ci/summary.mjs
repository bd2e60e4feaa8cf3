// Prints `N passed, N failed` from vitest's JUnit report (skipped tests count as failed: no suite
// may silently skip). A run that died before the tests ran counts as one failure.
import { existsSync, readFileSync } from 'node:fs';

const [file = 'test-results/junit.xml', status = '0'] = process.argv.slice(2);
if (!existsSync(file)) {
  console.log(`0 passed, 1 failed (no test report: make test stopped before the tests, exit ${status})`);
  process.exit(0);
}
const xml = readFileSync(file, 'utf8');
let passed = 0;
let failed = 0;
for (const match of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const body = match[2] ?? '';
  if (/<(failure|error|skipped)\b/.test(body)) failed += 1;
  else passed += 1;
}
if (status !== '0' && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
