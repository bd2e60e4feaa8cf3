import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** The static live map (services/devstack/web), next to dist/ and src/ alike. */
export const WEB_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../web');

export interface DemoLogin {
  role: string;
  email: string;
  password: string;
  note: string;
}

/** What the page needs to know, served as /config.json. */
export interface MapConfig {
  directusUrl: string;
  /** One per gateway instance; the page moves to the next when one goes away (close 1001). */
  gatewayUrls: string[];
  demoLogins: DemoLogin[];
  defaultEventId: number;
}

/** Track polyline as [lat, lon] pairs, served as /track.json. */
export type TrackPoints = [number, number][];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
};

const FILES = new Set(['index.html', 'app.js', 'style.css']);

/**
 * web/app.js with what it imports (@pitwall/live-client and @pitwall/live-protocol, from their
 * TypeScript sources) bundled into one ES module for the browser, by esbuild. Takes well under a second.
 */
export async function bundleMapScript(): Promise<string> {
  const result = await build({
    entryPoints: [join(WEB_ROOT, 'app.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@pitwall/source'],
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
  });
  const output = result.outputFiles[0];
  if (output === undefined) throw new Error('esbuild produced no output');
  return output.text;
}

export interface MapServer {
  url: string;
  close(): Promise<void>;
}

/** Serves the live map page, its config and the track on 127.0.0.1:`port` (0: any free port). No internet needed. */
export async function startMapServer(port: number, config: MapConfig, track: TrackPoints): Promise<MapServer> {
  const dynamic: Record<string, string> = {
    '/config.json': JSON.stringify(config),
    '/track.json': JSON.stringify({ points: track }),
  };
  let script: Promise<string> | undefined;
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const body = dynamic[path];
    if (body !== undefined) {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    const file = path === '/' ? 'index.html' : path.slice(1);
    if (!FILES.has(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const content = file === 'app.js' ? (script ??= bundleMapScript()) : readFile(join(WEB_ROOT, file));
    content.then(
      (content) => {
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
        res.end(content);
      },
      (err: unknown) => {
        if (file === 'app.js') script = undefined;
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`could not read the page: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  });
  await new Promise<void>((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolvePromise());
  });
  const address = server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  return {
    url: `http://127.0.0.1:${boundPort}/`,
    close: () =>
      new Promise<void>((resolvePromise) => {
        server.closeAllConnections();
        server.close(() => resolvePromise());
      }),
  };
}
