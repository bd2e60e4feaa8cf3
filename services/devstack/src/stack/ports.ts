import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { freePort } from '@pitwall/testkit';

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    // All interfaces: a server already on 127.0.0.1 or on 0.0.0.0 makes this fail either way.
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(true)));
  });
}

/**
 * The standard port when nothing holds it (so the usual URLs work), otherwise a free one: a developer
 * machine often runs its own Redis or PostgreSQL already. `taken` avoids handing one port out twice.
 */
export async function choosePort(
  standard: number | undefined,
  taken: Set<number>,
  { udp = false }: { udp?: boolean } = {},
): Promise<number> {
  if (standard !== undefined && !taken.has(standard) && (await tcpFree(standard)) && (!udp || (await udpFree(standard)))) {
    taken.add(standard);
    return standard;
  }
  for (;;) {
    const port = await freePort();
    if (taken.has(port)) continue;
    if (udp && !(await udpFree(port))) continue;
    taken.add(port);
    return port;
  }
}
