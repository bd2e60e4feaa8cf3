import { readFileSync } from 'node:fs';

// Teltonika's published example packets with their documented decoded values (shared with ingestion tests).

export interface VectorRecord {
  timestamp_ms: number;
  priority: number;
  lat: number;
  lon: number;
  altitude_m: number;
  heading_deg: number;
  satellites: number;
  speed_kmh: number;
  event_io_id: number;
  generation_type: number | null;
  io: Record<string, number>;
}

export interface Vector {
  name: string;
  transport: 'tcp' | 'udp';
  hex: string;
  records: VectorRecord[];
  codec_id?: string;
  crc?: string;
  crc_ok?: boolean;
  ack_hex: string;
  imei?: string;
}

export interface VectorFile {
  imei_handshake_example: { hex: string; imei: string; accept_reply_hex: string; reject_reply_hex: string };
  vectors: Vector[];
}

/** A copy of ../shared/vectors/teltonika-wiki.json, so a clean clone (CI) has it. */
export const VECTORS_URL = new URL('./fixtures/teltonika-wiki.json', import.meta.url);

export function loadVectors(): VectorFile {
  return JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as VectorFile;
}

/** A vector's IO elements as the {id: value} map the vector file documents them in. */
export function ioMap(io: readonly { id: number; value: bigint }[]): Record<string, number> {
  return Object.fromEntries(io.map((e) => [String(e.id), Number(e.value)]));
}
