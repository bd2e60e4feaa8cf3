/* global document, window, requestAnimationFrame */
// The live map of `make up`: logs in through Directus' REST API, lists the events the user may read,
// watches one through @pitwall/live-client (the gateway's /live protocol: token refresh, reconnects,
// gap-free resume) and draws the track, each car's trail and the cars on a canvas. No map tiles, no
// internet. The map server bundles this file with the library (esbuild). State is on window.pitwall
// for debugging and the browser test.
import { LiveClient } from '@pitwall/live-client';
import { backoffDelayMs, UNSUBSCRIBE_REASONS } from '@pitwall/live-protocol';

/** Seconds of trail per car: asked from the gateway on subscribe (history_seconds), then kept up. */
const TRAIL_SECONDS = 120;
/** Points kept per trail at most (memory bound whatever the fix rate). */
const TRAIL_MAX_POINTS = 1_000;
/** A car whose last fix is older than this is drawn grey. */
const STALE_MS = 30_000;

const $ = (id) => document.getElementById(id);

const state = {
  config: undefined,
  track: [],
  session: undefined, // { email, accessToken, refreshToken, expiresAt }
  connection: 'disconnected', // disconnected | connecting | authenticated | subscribed
  live: undefined, // the LiveClient while logged in
  subscribedOnce: false, // the first subscribe after login was sent (the client resubscribes itself after that)
  wantedEventId: undefined,
  subscribedEventId: undefined,
  positions: new Map(), // device_id -> position
  trails: new Map(), // device_id -> [[lat, lon, ts], ...] oldest first, last TRAIL_SECONDS
  historyPositions: 0, // trail positions the last subscribe brought (history_seconds)
  resumes: { recovered: 0, notRecovered: 0 },
  updates: 0, // position messages applied since the last subscribe
  moves: 0, // positions that changed a marker's coordinates since the last subscribe
  errors: [], // { at, code, message }
  // Directus realtime (its own WebSocket, the same token): the watched event's entries and status.
  business: undefined, // { socket, eventId, attempt, timer }
  entries: new Map(), // entry id -> { label, imei }
  eventStatus: undefined,
  refreshNow: () => state.live?.refreshNow() ?? Promise.resolve(),
};
window.pitwall = state;

// ---- UI helpers ---------------------------------------------------------------------------------

function setConnection(value) {
  state.connection = value;
  const el = $('connection-state');
  el.dataset.state = value;
  el.textContent = value;
}

function setSubscription(eventId) {
  state.subscribedEventId = eventId;
  const el = $('subscription-state');
  el.dataset.event = eventId === undefined ? '' : String(eventId);
  el.textContent = eventId === undefined ? 'no event' : `event ${eventId}`;
  if (eventId !== undefined && state.connection === 'authenticated') setConnection('subscribed');
  if (eventId === undefined && state.connection === 'subscribed') setConnection('authenticated');
}

function showError(code, message) {
  state.errors.push({ at: Date.now(), code, message });
  if (state.errors.length > 50) state.errors.shift();
  const li = document.createElement('li');
  li.dataset.code = code;
  li.textContent = `${new Date().toLocaleTimeString()} ${code}: ${message}`;
  $('errors').prepend(li);
  while ($('errors').children.length > 12) $('errors').lastChild.remove();
}

function showSession() {
  const loggedIn = state.session !== undefined;
  $('login-panel').hidden = loggedIn;
  $('session-panel').hidden = !loggedIn;
  $('user-email').textContent = loggedIn ? state.session.email : '';
  updateTokenState();
}

function updateTokenState() {
  const el = $('token-state');
  if (!state.session) {
    el.textContent = 'logged out';
    return;
  }
  const seconds = Math.max(0, Math.round((state.session.expiresAt - Date.now()) / 1000));
  el.textContent = `token ${seconds}s`;
}

// ---- Directus (REST) ----------------------------------------------------------------------------

async function directus(path, { method = 'GET', body, token } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${state.config.directusUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : {};
  if (!res.ok) {
    const message = parsed.errors?.[0]?.message ?? `HTTP ${res.status}`;
    const error = new Error(message);
    error.status = res.status;
    throw error;
  }
  return parsed.data;
}

function expiryOf(accessToken, expiresMs) {
  try {
    const claims = JSON.parse(window.atob(accessToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    if (typeof claims.exp === 'number') return claims.exp * 1000;
  } catch {
    // fall back to Directus' `expires`
  }
  return Date.now() + expiresMs;
}

function adoptTokens(email, data) {
  state.session = {
    email,
    accessToken: data.access_token,
    refreshToken: data.refresh_token,
    expiresAt: expiryOf(data.access_token, data.expires),
  };
  // Directus's own socket takes the fresh token too.
  sendBusiness({ type: 'auth', access_token: state.session.accessToken });
  showSession();
}

/**
 * A fresh access token for the live client (Directus /auth/refresh), called by it before expiry and
 * after the gateway says the token expired. Directus briefly away: a few tries; a refused refresh
 * token: throw, and the live client stops (log in again).
 */
async function refreshTokens() {
  for (let attempt = 0; ; attempt++) {
    if (!state.session) throw new Error('logged out');
    try {
      const data = await directus('/auth/refresh', { method: 'POST', body: { refresh_token: state.session.refreshToken, mode: 'json' } });
      adoptTokens(state.session.email, data);
      return state.session.accessToken;
    } catch (err) {
      showError('refresh_failed', `could not refresh the token: ${err.message}`);
      if (err.status === 401 || err.status === 403 || attempt >= 4) throw err;
      await new Promise((resolve) => setTimeout(resolve, 2_000 * (attempt + 1)));
    }
  }
}

async function login(email, password) {
  try {
    const data = await directus('/auth/login', { method: 'POST', body: { email, password, mode: 'json' } });
    adoptTokens(email, data);
    await loadEvents();
    connect();
  } catch (err) {
    showError('login_failed', err.message);
  }
}

function logout() {
  const session = state.session;
  state.session = undefined;
  state.wantedEventId = undefined;
  state.subscribedOnce = false;
  if (session)
    void directus('/auth/logout', { method: 'POST', body: { refresh_token: session.refreshToken, mode: 'json' } }).catch(() => undefined);
  state.live?.close();
  state.live = undefined;
  followEvent(undefined);
  clearPositions();
  setSubscription(undefined);
  setConnection('disconnected');
  showSession();
}

async function loadEvents() {
  const select = $('event-select');
  select.replaceChildren();
  try {
    const events = await directus('/items/events?fields=id,name,status&sort=id&limit=-1', { token: state.session.accessToken });
    for (const event of events) {
      const option = document.createElement('option');
      option.value = String(event.id);
      option.textContent = `${event.id} · ${event.name} (${event.status})`;
      select.append(option);
    }
    const first = events.find((e) => e.id === state.config.defaultEventId) ?? events[0];
    if (first) {
      select.value = String(first.id);
      $('event-id').value = String(first.id);
      state.wantedEventId = first.id;
    }
  } catch (err) {
    showError('events_unavailable', `could not list events: ${err.message}`);
  }
}

// ---- Gateway (@pitwall/live-client) ------------------------------------------------------------

function connect() {
  if (!state.session || state.live) return;
  const live = new LiveClient({
    url: state.config.gatewayUrls,
    token: () => state.session.accessToken,
    refreshToken: refreshTokens,
  });
  state.live = live;
  live.on('state', (value) => {
    if (state.live !== live) return;
    if (value === 'open') {
      setConnection('authenticated');
      if (state.wantedEventId !== undefined && !state.subscribedOnce) subscribe(state.wantedEventId);
      return;
    }
    setSubscription(undefined);
    setConnection(value === 'connecting' || value === 'authenticating' ? 'connecting' : 'disconnected');
  });
  live.on('reconnecting', ({ closeCode, delayMs }) => {
    if (closeCode !== 1000) showError(`closed_${closeCode}`, `connection closed; reconnecting in ${delayMs} ms`);
  });
  live.on('subscribed', ({ eventId, recovered, snapshot, history }) => {
    if (eventId !== state.wantedEventId) return;
    if (recovered === true) {
      state.resumes.recovered += 1;
    } else {
      if (recovered === false) state.resumes.notRecovered += 1;
      // A first subscribe, or a gap the gateway no longer held: start over from the trail and snapshot.
      clearPositions();
      state.historyPositions = history.length;
      for (const position of history) applyPosition(position);
      for (const position of snapshot) applyPosition(position);
    }
    setSubscription(eventId);
  });
  live.on('positions', ({ eventId, positions }) => {
    if (eventId !== state.subscribedEventId) return;
    for (const position of positions) applyPosition(position);
  });
  live.on('unsubscribed', ({ eventId, reason }) => {
    if (eventId === state.subscribedEventId) setSubscription(undefined);
    if (reason === UNSUBSCRIBE_REASONS.forbidden) {
      showError(UNSUBSCRIBE_REASONS.forbidden, `no longer allowed to watch event ${eventId}`);
      clearPositions();
    }
  });
  live.on('error', ({ code, message, eventId, fatal }) => {
    showError(code, message);
    if (fatal && eventId !== undefined && eventId === state.wantedEventId) {
      setSubscription(undefined);
      followEvent(undefined);
      clearPositions();
    }
  });
  live.start();
}

function subscribe(eventId) {
  state.subscribedOnce = true;
  const live = state.live;
  if (!live) return;
  if (state.wantedEventId !== undefined && state.wantedEventId !== eventId) live.unsubscribe(state.wantedEventId);
  state.wantedEventId = eventId;
  setSubscription(undefined);
  clearPositions();
  live.subscribe(eventId, { historySeconds: TRAIL_SECONDS });
  followEvent(eventId);
}

// ---- Directus realtime (business updates) -------------------------------------------------------

function sendBusiness(message) {
  const socket = state.business?.socket;
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

/**
 * Follows an event's entries and status through Directus's realtime WebSocket (the seed's second
 * socket, same access token): a car entered while the page is open shows with its label at once, before
 * its first position. Without realtime (WEBSOCKETS_ENABLED=false) the page simply lists what positions bring.
 */
function followEvent(eventId) {
  const previous = state.business;
  state.business = undefined;
  if (previous) {
    clearTimeout(previous.timer);
    previous.socket?.close(1000);
  }
  state.entries.clear();
  state.eventStatus = undefined;
  requestDraw();
  if (eventId === undefined || !state.session) return;
  const business = { socket: undefined, eventId, attempt: 0, timer: undefined };
  state.business = business;
  openBusiness(business);
}

function openBusiness(business) {
  const url = `${state.config.directusUrl.replace(/^http/, 'ws')}/websocket`;
  const socket = new WebSocket(url);
  business.socket = socket;
  socket.onopen = () => {
    if (state.business === business && state.session)
      socket.send(JSON.stringify({ type: 'auth', access_token: state.session.accessToken }));
  };
  socket.onmessage = (event) => {
    if (state.business !== business) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong' }));
    } else if (message.type === 'auth' && message.status === 'ok') {
      business.attempt = 0;
      socket.send(
        JSON.stringify({
          type: 'subscribe',
          collection: 'entries',
          uid: 'entries',
          query: { fields: ['id', 'label', 'device.imei'], filter: { event: { _eq: business.eventId } } },
        }),
      );
      socket.send(
        JSON.stringify({
          type: 'subscribe',
          collection: 'events',
          uid: 'event',
          query: { fields: ['id', 'status'], filter: { id: { _eq: business.eventId } } },
        }),
      );
    } else if (message.type === 'subscription') {
      onBusinessChange(message);
    }
  };
  socket.onclose = () => {
    if (state.business !== business || !state.session) return;
    // Directus away (or realtime off): try again later, with the protocol's backoff.
    business.timer = setTimeout(() => {
      if (state.business === business) openBusiness(business);
    }, backoffDelayMs(business.attempt++));
  };
  socket.onerror = () => undefined;
}

function onBusinessChange(message) {
  const rows = Array.isArray(message.data) ? message.data : [];
  if (message.uid === 'event') {
    const event = rows.find((row) => typeof row === 'object' && row !== null);
    if (event && event.status !== undefined) state.eventStatus = event.status;
    $('subscription-state').title = state.eventStatus === undefined ? '' : `status: ${state.eventStatus}`;
    return;
  }
  if (message.uid !== 'entries') return;
  if (message.event === 'init') state.entries.clear();
  if (message.event === 'delete') {
    for (const id of rows) state.entries.delete(String(typeof id === 'object' && id !== null ? id.id : id));
  } else {
    for (const row of rows) {
      if (typeof row !== 'object' || row === null) continue;
      state.entries.set(String(row.id), { label: row.label ?? '', imei: row.device?.imei });
    }
  }
  requestDraw();
}

// ---- Positions and drawing ----------------------------------------------------------------------

function clearPositions() {
  state.positions.clear();
  state.trails.clear();
  state.historyPositions = 0;
  state.updates = 0;
  state.moves = 0;
  requestDraw();
}

function applyPosition(position) {
  const previous = state.positions.get(position.device_id);
  if (previous && position.ts <= previous.ts) return; // a fix already shown (trail and snapshot), or an older one arriving late
  if (previous && (previous.lat !== position.lat || previous.lon !== position.lon)) state.moves += 1;
  state.positions.set(position.device_id, position);
  let trail = state.trails.get(position.device_id);
  if (!trail) state.trails.set(position.device_id, (trail = []));
  trail.push([position.lat, position.lon, position.ts]);
  const oldest = position.ts - TRAIL_SECONDS * 1000;
  let drop = 0;
  while (drop < trail.length && (trail[drop][2] < oldest || trail.length - drop > TRAIL_MAX_POINTS)) drop += 1;
  if (drop > 0) trail.splice(0, drop);
  state.updates += 1;
  requestDraw();
}

/** Grey: no fix for STALE_MS (device time, or reception when the device clock is off). */
function isStale(position, now) {
  return now - Math.max(position.ts, position.rx) > STALE_MS;
}

let drawPending = false;
function requestDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    draw();
    renderTable();
  });
}

function colorOf(id) {
  let hash = 0;
  for (const ch of id) hash = (hash * 31 + ch.charCodeAt(0)) | 0;
  // Golden-angle steps: IMEIs that differ in one digit still get far-apart hues.
  return `hsl(${Math.round(Math.abs(hash) * 137.508) % 360} 80% 60%)`;
}

function projection(width, height) {
  const points = [...state.track, ...[...state.positions.values()].map((p) => [p.lat, p.lon])];
  if (points.length === 0) return undefined;
  let minLat = Infinity;
  let maxLat = -Infinity;
  let minLon = Infinity;
  let maxLon = -Infinity;
  for (const [lat, lon] of points) {
    minLat = Math.min(minLat, lat);
    maxLat = Math.max(maxLat, lat);
    minLon = Math.min(minLon, lon);
    maxLon = Math.max(maxLon, lon);
  }
  // Equirectangular with the longitude shrunk by cos(latitude): right for a few kilometres of track.
  const kx = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180);
  const spanX = Math.max((maxLon - minLon) * kx, 1e-6);
  const spanY = Math.max(maxLat - minLat, 1e-6);
  const margin = 60;
  const scale = Math.min((width - 2 * margin) / spanX, (height - 2 * margin) / spanY);
  const offsetX = (width - spanX * scale) / 2;
  const offsetY = (height - spanY * scale) / 2;
  return (lat, lon) => [offsetX + (lon - minLon) * kx * scale, height - offsetY - (lat - minLat) * scale];
}

function draw() {
  const canvas = $('map');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = '#0d1116';
  ctx.fillRect(0, 0, width, height);
  const project = projection(width, height);
  if (!project) return;
  if (state.track.length > 1) {
    ctx.lineJoin = 'round';
    ctx.strokeStyle = '#3a4350';
    ctx.lineWidth = 14;
    ctx.beginPath();
    state.track.forEach(([lat, lon], i) => {
      const [x, y] = project(lat, lon);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.closePath();
    ctx.stroke();
    ctx.strokeStyle = '#59626f';
    ctx.lineWidth = 1;
    ctx.stroke();
  }
  const now = Date.now();
  ctx.lineJoin = 'round';
  ctx.lineWidth = 2;
  for (const [deviceId, trail] of state.trails) {
    if (trail.length < 2) continue;
    const position = state.positions.get(deviceId);
    ctx.strokeStyle = position && !isStale(position, now) ? colorOf(deviceId) : '#555';
    ctx.globalAlpha = 0.55;
    ctx.beginPath();
    trail.forEach(([lat, lon], i) => {
      const [x, y] = project(lat, lon);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.globalAlpha = 1;
  }
  ctx.font = '12px system-ui, sans-serif';
  for (const position of state.positions.values()) {
    const [x, y] = project(position.lat, position.lon);
    const stale = isStale(position, now);
    ctx.fillStyle = stale ? '#666' : colorOf(position.device_id);
    ctx.beginPath();
    ctx.arc(x, y, 7, 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.fillStyle = '#e6e9ee';
    const label = position.label || position.device_id;
    const textWidth = ctx.measureText(label).width;
    ctx.fillText(label, x + 10 + textWidth > width ? x - 10 - textWidth : x + 10, y - 8);
  }
}

function renderTable() {
  const body = $('devices').querySelector('tbody');
  const now = Date.now();
  const rows = [...state.positions.values()]
    .sort((a, b) => (a.label || a.device_id).localeCompare(b.label || b.device_id, undefined, { numeric: true }))
    .map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.device = p.device_id;
      if (isStale(p, now)) tr.dataset.stale = 'true';
      for (const text of [p.label || p.device_id, Math.round(p.speed), `${Math.max(0, Math.round((now - p.ts) / 1000))}s`]) {
        const td = document.createElement('td');
        td.textContent = String(text);
        tr.append(td);
      }
      return tr;
    });
  // Entered cars without a position yet (Directus realtime): listed with their label at once.
  for (const entry of state.entries.values()) {
    if (!entry.imei || state.positions.has(entry.imei)) continue;
    const tr = document.createElement('tr');
    tr.dataset.device = entry.imei;
    tr.dataset.noFix = 'true';
    for (const text of [entry.label || entry.imei, '–', 'no fix']) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $('marker-count').textContent = String(state.positions.size);
}

// ---- Start --------------------------------------------------------------------------------------

async function start() {
  const [config, track] = await Promise.all([fetch('config.json').then((r) => r.json()), fetch('track.json').then((r) => r.json())]);
  state.config = config;
  state.track = track.points ?? [];
  const list = $('demo-logins');
  for (const demo of config.demoLogins) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'use';
    button.onclick = () => {
      $('email').value = demo.email;
      $('password').value = demo.password;
    };
    li.append(button, `${demo.role}: ${demo.email} / ${demo.password} (${demo.note})`);
    list.append(li);
  }
  const first = config.demoLogins[0];
  if (first) {
    $('email').value = first.email;
    $('password').value = first.password;
  }
  $('login-form').onsubmit = (event) => {
    event.preventDefault();
    void login($('email').value, $('password').value);
  };
  $('logout-button').onclick = logout;
  $('event-select').onchange = () => {
    $('event-id').value = $('event-select').value;
  };
  $('subscribe-form').onsubmit = (event) => {
    event.preventDefault();
    const id = Number($('event-id').value || $('event-select').value);
    if (Number.isInteger(id) && id > 0) subscribe(id);
  };
  window.addEventListener('resize', requestDraw);
  setInterval(() => {
    updateTokenState();
    requestDraw();
  }, 5000);
  setInterval(updateTokenState, 1000);
  showSession();
  setConnection('disconnected');
  requestDraw();
}

void start();
