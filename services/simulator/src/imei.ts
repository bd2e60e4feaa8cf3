/** First simulated IMEI: a real-looking Teltonika TAC (35630704) followed by a serial. */
const IMEI_BASE = 356307040000000;

/**
 * The IMEI of simulated device `index` (0-based): String(356307040000000 + index). Deterministic, so
 * the business-plane seed can create the matching devices.
 */
export function simulatorImei(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 9_999_999) throw new RangeError(`device index out of range: ${index}`);
  return String(IMEI_BASE + index);
}
