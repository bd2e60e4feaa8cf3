/* global document, window, requestAnimationFrame */
// The live map of `make up`: logs in through Directus' REST API, lists the events the user may read,
// watches one over the gateway's WebSocket protocol (/live) and draws the track and the cars on a
// canvas. No map tiles, no internet. State is on window.pitwall for debugging and the browser test.

const $ = (id) => document.getElementById(id);

const state = {
  config: undefined,
  track: [],
  session: undefined, // { email, accessToken, refreshToken, expiresAt }
  connection: 'disconnected', // disconnected | connecting | authenticated | subscribed
  socket: undefined,
  gatewayIndex: 0,
  reconnectDelayMs: 500,
  wantedEventId: undefined,
  subscribedEventId: undefined,
  positions: new Map(), // device_id -> position
  updates: 0, // position messages applied since the last subscribe
  moves: 0, // positions that changed a marker's coordinates since the last subscribe
  errors: [], // { at, code, message }
  refreshTimer: undefined,
  uid: 0,
  refreshNow: () => refreshTokens(),
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
  scheduleRefresh();
  showSession();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  if (!state.session) return;
  const lifetime = state.session.expiresAt - Date.now();
  // Well before expiry: a quarter of the lifetime early, at most 60 s early.
  const delay = Math.max(1000, lifetime - Math.min(60_000, lifetime / 4));
  state.refreshTimer = setTimeout(() => void refreshTokens(), delay);
}

async function refreshTokens() {
  if (!state.session) return;
  try {
    const data = await directus('/auth/refresh', { method: 'POST', body: { refresh_token: state.session.refreshToken, mode: 'json' } });
    adoptTokens(state.session.email, data);
    send({ type: 'auth', access_token: state.session.accessToken });
  } catch (err) {
    showError('refresh_failed', `could not refresh the token: ${err.message}`);
    state.refreshTimer = setTimeout(() => void refreshTokens(), 5000);
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
  clearTimeout(state.refreshTimer);
  const session = state.session;
  state.session = undefined;
  state.wantedEventId = undefined;
  if (session)
    void directus('/auth/logout', { method: 'POST', body: { refresh_token: session.refreshToken, mode: 'json' } }).catch(() => undefined);
  state.socket?.close(1000, 'logout');
  state.socket = undefined;
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

// ---- Gateway (WebSocket) ------------------------------------------------------------------------

function send(message) {
  if (state.socket?.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function connect() {
  if (!state.session) return;
  state.socket?.close(1000, 'reconnect');
  const urls = state.config.gatewayUrls;
  const url = urls[state.gatewayIndex % urls.length];
  setConnection('connecting');
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => {
    if (state.session) send({ type: 'auth', access_token: state.session.accessToken });
  };
  socket.onmessage = (event) => {
    try {
      onMessage(JSON.parse(event.data));
    } catch (err) {
      showError('bad_frame', err.message);
    }
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = undefined;
    setSubscription(undefined);
    setConnection('disconnected');
    if (!state.session) return;
    if (event.code !== 1000) showError(`closed_${event.code}`, event.reason || 'connection closed');
    if (event.code === 1001) state.gatewayIndex += 1; // that pod is going away: try another
    if (event.code === 4401) void refreshTokens();
    const delay = state.reconnectDelayMs;
    state.reconnectDelayMs = Math.min(10_000, delay * 2);
    setTimeout(connect, delay);
  };
}

function subscribe(eventId) {
  state.wantedEventId = eventId;
  if (state.subscribedEventId !== undefined && state.subscribedEventId !== eventId) {
    send({ type: 'unsubscribe', event_id: state.subscribedEventId, uid: `u${++state.uid}` });
    setSubscription(undefined);
  }
  clearPositions();
  send({ type: 'subscribe', event_id: eventId, uid: `s${++state.uid}` });
}

function onMessage(message) {
  switch (message.type) {
    case 'auth':
      if (message.status === 'ok') {
        state.reconnectDelayMs = 500;
        if (state.connection === 'connecting') setConnection('authenticated');
        if (message.expires_at && state.session) state.session.expiresAt = message.expires_at;
        if (state.subscribedEventId === undefined && state.wantedEventId !== undefined) subscribe(state.wantedEventId);
      }
      break;
    case 'subscribed':
      if (message.event_id !== state.wantedEventId) break;
      clearPositions();
      setSubscription(message.event_id);
      for (const position of message.snapshot ?? []) applyPosition(position);
      break;
    case 'positions':
      if (message.event_id !== state.subscribedEventId) break;
      for (const position of message.positions) applyPosition(position);
      break;
    case 'unsubscribed':
      if (message.event_id === state.subscribedEventId) setSubscription(undefined);
      if (message.reason === 'forbidden') {
        showError('forbidden', `no longer allowed to watch event ${message.event_id}`);
        clearPositions();
      }
      break;
    case 'error':
      showError(message.code, message.message);
      if (message.code === 'token_expired') void refreshTokens();
      break;
    default:
      break;
  }
}

// ---- Positions and drawing ----------------------------------------------------------------------

function clearPositions() {
  state.positions.clear();
  state.updates = 0;
  state.moves = 0;
  requestDraw();
}

function applyPosition(position) {
  const previous = state.positions.get(position.device_id);
  if (previous && position.ts < previous.ts) return; // an older fix arriving late
  if (previous && (previous.lat !== position.lat || previous.lon !== position.lon)) state.moves += 1;
  state.positions.set(position.device_id, position);
  state.updates += 1;
  requestDraw();
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
  ctx.font = '12px system-ui, sans-serif';
  for (const position of state.positions.values()) {
    const [x, y] = project(position.lat, position.lon);
    const stale = now - position.rx > 30_000;
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
      for (const text of [p.label || p.device_id, Math.round(p.speed), `${Math.max(0, Math.round((now - p.ts) / 1000))}s`]) {
        const td = document.createElement('td');
        td.textContent = String(text);
        tr.append(td);
      }
      return tr;
    });
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
    send({ type: 'ping' });
    requestDraw();
  }, 5000);
  setInterval(updateTokenState, 1000);
  showSession();
  setConnection('disconnected');
  requestDraw();
}

void start();
