/** A Teltonika device identifier: its IMEI, 15 ASCII digits (some firmwares send 16 or 17 with a prefix). */
const IMEI_PATTERN = /^\d{15,17}$/;

export function isImei(value: string): boolean {
  return IMEI_PATTERN.test(value);
}
