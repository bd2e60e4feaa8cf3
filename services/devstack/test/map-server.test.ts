import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMapServer, type MapConfig, type MapServer } from '../src/index.js';

const config: MapConfig = {
  directusUrl: 'http://127.0.0.1:8055',
  gatewayUrls: ['ws://127.0.0.1:8080/live'],
  defaultEventId: 1,
  demoLogins: [{ role: 'viewer', email: 'v@example.com', password: 'pw', note: 'event 1' }],
};

let server: MapServer;

beforeAll(async () => {
  server = await startMapServer(0, config, [
    [50.1, 5.9],
    [50.2, 6.0],
  ]);
});

afterAll(async () => {
  await server.close();
});

describe('the live map server', () => {
  it('serves the page, its script and style', async () => {
    const page = await fetch(server.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toContain('id="map"');
    expect(html).toContain('src="app.js"');
    for (const [file, type] of [
      ['app.js', 'text/javascript'],
      ['style.css', 'text/css'],
    ] as const) {
      const res = await fetch(new URL(file, server.url));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain(type);
      expect((await res.text()).length).toBeGreaterThan(100);
    }
  });

  it('serves the page script bundled with the live client: no bare import left for the browser to resolve', async () => {
    const script = await (await fetch(new URL('app.js', server.url))).text();
    expect(script).not.toMatch(/from\s*['"]@pitwall\//);
    expect(script).toContain('LiveClient needs at least one url');
    // The protocol's own table, not a copy: the close-code actions come from @pitwall/live-protocol.
    expect(script).toContain('function actionForCloseCode');
  });

  it('serves the config and the track as JSON', async () => {
    expect(await (await fetch(new URL('config.json', server.url))).json()).toEqual(config);
    expect(await (await fetch(new URL('track.json', server.url))).json()).toEqual({
      points: [
        [50.1, 5.9],
        [50.2, 6.0],
      ],
    });
  });

  it('serves nothing else, whatever the path', async () => {
    for (const path of ['/package.json', '/../package.json', '/%2e%2e/src/up.ts', '/web/app.js', '/nope']) {
      const res = await fetch(`${server.url.replace(/\/$/, '')}${path}`);
      expect(res.status, path).toBe(404);
      await res.body?.cancel();
    }
  });
});
