/** A Teltonika device identifier is its IMEI: 15 ASCII digits (some firmwares send 16 or 17 with a prefix). */
export const IMEI_MIN_DIGITS = 15;
export const IMEI_MAX_DIGITS = 17;
const IMEI_PATTERN = new RegExp(`^[0-9]{${IMEI_MIN_DIGITS},${IMEI_MAX_DIGITS}}$`);

export function isImei(value: string): boolean {
  return IMEI_PATTERN.test(value);
}
