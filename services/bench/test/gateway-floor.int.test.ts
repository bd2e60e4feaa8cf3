import { sharedRedisUrl } from '@pitwall/testkit';
import { describe, expect, it } from 'vitest';
import { measureFloor } from '../src/suites/gateway-floor/floor-run.js';

// The gateway-floor bench's counting, end to end with the real processes it measures (the built
// gateway and the built raw reader: make test builds first), at a low rate: every position the
// producer appended is read exactly once by the gateway (positions_received) and by the raw reader,
// and what each read inside the measured interval is counted. No timing is asserted.

describe('gateway-floor measurement', () => {
  it('reads every produced position once in the gateway and in the raw reader', async () => {
    const floor = await measureFloor({
      redisUrl: sharedRedisUrl(),
      shards: 2,
      devices: 50,
      positionsPerSecond: 500,
      settleMs: 300,
      measureMs: 700,
    });
    expect(floor.produced).toBeGreaterThan(0);
    expect(floor.gatewayTotal).toBe(floor.produced);
    expect(floor.rawTotal).toBe(floor.produced);
    expect(floor.gatewayPositions).toBeGreaterThan(0);
    expect(floor.rawEntries).toBeGreaterThan(0);
  });
});
