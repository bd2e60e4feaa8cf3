// A closed race circuit (fictional, ~4.3 km, in the Ardennes) as a dense lat/lon polyline, and the
// speed a car can carry along it: limited by lateral grip in corners, by acceleration out of them
// and by braking into them.

export interface LatLon {
  lat: number;
  lon: number;
}

const CENTER: LatLon = { lat: 50.4372, lon: 5.9714 };
const METRES_PER_DEG_LAT = 111_320;
const METRES_PER_DEG_LON = METRES_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180);

/** Corners of the circuit in metres east/north of CENTER, clockwise from the start/finish straight. */
const CONTROL_POINTS: readonly [number, number][] = [
  [-300, -420],
  [300, -440],
  [700, -400],
  [860, -300],
  [880, -140],
  [760, -40],
  [560, -20],
  [470, 80],
  [520, 240],
  [640, 380],
  [600, 520],
  [420, 560],
  [220, 480],
  [60, 330],
  [-120, 300],
  [-260, 420],
  [-460, 460],
  [-600, 340],
  [-580, 160],
  [-420, 40],
  [-520, -120],
  [-560, -300],
];

const SPACING_M = 10;
const MAX_SPEED_MS = 86; // ~310 km/h
const LATERAL_ACCEL = 16; // ~1.6 g
const ACCEL = 7;
const BRAKE = 14;

interface Point {
  x: number;
  y: number;
}

/** Closed centripetal-free (uniform) Catmull-Rom spline through the control points, resampled every SPACING_M. */
function buildPolyline(): Point[] {
  const n = CONTROL_POINTS.length;
  const at = (i: number): Point => {
    const [x, y] = CONTROL_POINTS[((i % n) + n) % n] ?? [0, 0];
    return { x, y };
  };
  const dense: Point[] = [];
  for (let i = 0; i < n; i++) {
    const p0 = at(i - 1);
    const p1 = at(i);
    const p2 = at(i + 1);
    const p3 = at(i + 2);
    for (let k = 0; k < 50; k++) {
      const t = k / 50;
      const t2 = t * t;
      const t3 = t2 * t;
      const f = (a: number, b: number, c: number, d: number) =>
        0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t2 + (-a + 3 * b - 3 * c + d) * t3);
      dense.push({ x: f(p0.x, p1.x, p2.x, p3.x), y: f(p0.y, p1.y, p2.y, p3.y) });
    }
  }
  // Resample at even spacing.
  const out: Point[] = [dense[0] ?? { x: 0, y: 0 }];
  let carry = 0;
  for (let i = 1; i <= dense.length; i++) {
    const a = dense[i - 1] ?? { x: 0, y: 0 };
    const b = dense[i % dense.length] ?? { x: 0, y: 0 };
    const seg = Math.hypot(b.x - a.x, b.y - a.y);
    let d = SPACING_M - carry;
    while (d <= seg) {
      out.push({ x: a.x + ((b.x - a.x) * d) / seg, y: a.y + ((b.y - a.y) * d) / seg });
      d += SPACING_M;
    }
    carry = seg - (d - SPACING_M);
  }
  // The last sample sits within SPACING_M of the first: drop it if it nearly coincides.
  const last = out[out.length - 1];
  const first = out[0];
  if (last && first && Math.hypot(last.x - first.x, last.y - first.y) < SPACING_M / 2) out.pop();
  return out;
}

const POINTS = buildPolyline();

function toLatLon(p: Point): LatLon {
  return { lat: CENTER.lat + p.y / METRES_PER_DEG_LAT, lon: CENTER.lon + p.x / METRES_PER_DEG_LON };
}

/** The circuit as a closed polyline (the last point connects back to the first), WGS84 degrees. */
export const TRACK: readonly LatLon[] = Object.freeze(POINTS.map((p) => Object.freeze(toLatLon(p))));

/** Length of each segment i (from point i to i+1, wrapping) and the distance at its start. */
const SEGMENT_LENGTH: number[] = POINTS.map((p, i) => {
  const q = POINTS[(i + 1) % POINTS.length] ?? p;
  return Math.hypot(q.x - p.x, q.y - p.y);
});
const SEGMENT_START: number[] = [];
{
  let s = 0;
  for (const length of SEGMENT_LENGTH) {
    SEGMENT_START.push(s);
    s += length;
  }
}

/** Lap length in metres. */
export const TRACK_LENGTH_M = SEGMENT_LENGTH.reduce((a, b) => a + b, 0);

/** Heading of each segment, degrees clockwise from north. */
const SEGMENT_HEADING: number[] = POINTS.map((p, i) => {
  const q = POINTS[(i + 1) % POINTS.length] ?? p;
  return ((Math.atan2(q.x - p.x, q.y - p.y) * 180) / Math.PI + 360) % 360;
});

/** Speed limit at each point (m/s): grip in corners, then acceleration and braking limits, around the closed lap. */
const POINT_SPEED: number[] = (() => {
  const n = POINTS.length;
  const v = POINTS.map((_, i) => {
    const before = SEGMENT_HEADING[(i - 1 + n) % n] ?? 0;
    const after = SEGMENT_HEADING[i] ?? 0;
    const turn = Math.abs((((after - before + 540) % 360) - 180) * (Math.PI / 180));
    const radius = turn < 1e-6 ? Infinity : SPACING_M / turn;
    return Math.min(MAX_SPEED_MS, Math.sqrt(LATERAL_ACCEL * radius));
  });
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 1; k <= n; k++) {
      const i = k % n;
      const prev = v[(i - 1 + n) % n] ?? 0;
      v[i] = Math.min(v[i] ?? 0, Math.sqrt(prev * prev + 2 * ACCEL * (SEGMENT_LENGTH[(i - 1 + n) % n] ?? 0)));
    }
    for (let k = n - 1; k >= -1; k--) {
      const i = (k + n) % n;
      const next = v[(i + 1) % n] ?? 0;
      v[i] = Math.min(v[i] ?? 0, Math.sqrt(next * next + 2 * BRAKE * (SEGMENT_LENGTH[i] ?? 0)));
    }
  }
  return v;
})();

export interface TrackState extends LatLon {
  /** Ground speed a racing car carries here, km/h. */
  speedKmh: number;
  /** Degrees clockwise from north. */
  headingDeg: number;
}

/** Index of the segment that contains distance `s` (already wrapped into [0, TRACK_LENGTH_M)). */
function segmentAt(s: number): number {
  let lo = 0;
  let hi = SEGMENT_START.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((SEGMENT_START[mid] ?? 0) <= s) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Where a car is `s` metres into the lap (any real; wraps), with the speed it carries there. */
export function trackStateAt(s: number): TrackState {
  const wrapped = ((s % TRACK_LENGTH_M) + TRACK_LENGTH_M) % TRACK_LENGTH_M;
  const i = segmentAt(wrapped);
  const p = POINTS[i] ?? { x: 0, y: 0 };
  const q = POINTS[(i + 1) % POINTS.length] ?? p;
  const length = SEGMENT_LENGTH[i] ?? 1;
  const t = length > 0 ? (wrapped - (SEGMENT_START[i] ?? 0)) / length : 0;
  const v0 = POINT_SPEED[i] ?? 0;
  const v1 = POINT_SPEED[(i + 1) % POINTS.length] ?? v0;
  const { lat, lon } = toLatLon({ x: p.x + (q.x - p.x) * t, y: p.y + (q.y - p.y) * t });
  return { lat, lon, speedKmh: (v0 + (v1 - v0) * t) * 3.6, headingDeg: SEGMENT_HEADING[i] ?? 0 };
}
