import { describe, expect, it } from 'vitest';
import { eventReadPermissions, seedDeviceImei } from '../src/index.js';

describe('eventReadPermissions', () => {
  it('reads one event with the rule the gateway relies on, and its entries and entered devices', () => {
    expect(eventReadPermissions([1])).toEqual([
      { collection: 'events', action: 'read', permissions: { id: { _eq: 1 } } },
      { collection: 'entries', action: 'read', permissions: { event: { _eq: 1 } } },
      { collection: 'devices', action: 'read', permissions: { '$FOLLOW(entries,device)': { event: { _eq: 1 } } } },
    ]);
  });

  it('reads several events with _in, and none with a rule no row matches', () => {
    expect(eventReadPermissions([1, 3])[0]?.permissions).toEqual({ id: { _in: [1, 3] } });
    expect(eventReadPermissions([]).map((p) => p.permissions)).toEqual([
      { id: { _null: true } },
      { event: { _null: true } },
      { '$FOLLOW(entries,device)': { event: { _null: true } } },
    ]);
  });
});

describe('seedDeviceImei', () => {
  it('numbers devices like the simulator: 15-digit IMEIs from 356307040000000', () => {
    expect(seedDeviceImei(0)).toBe('356307040000000');
    expect(seedDeviceImei(11)).toBe('356307040000011');
  });
});
