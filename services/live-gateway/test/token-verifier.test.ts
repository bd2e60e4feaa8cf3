import { SignJWT, base64url } from 'jose';
import { describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import { freePort } from '@pitwall/testkit';
import { AuthenticationError } from '../src/auth/authentication-error.js';
import { DirectusTokenVerifier } from '../src/auth/directus-token-verifier.js';
import { LocalTokenVerifier } from '../src/auth/local-token-verifier.js';
import { DirectusUnavailableError } from '../src/directus/directus-unavailable-error.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { testDirectusClient } from './support/directus-client.js';

// Tokens shaped like Directus's (HS256, issuer `directus`, claims id/role/app_access/admin_access),
// signed here so every way of being wrong can be built.
const SECRET = 'directus-secret-for-tests-0123456789abcdef';
const USER = '6a1f2c3d-0000-4000-8000-000000000001';

function sign(
  claims: Record<string, unknown> = {},
  {
    secret = SECRET,
    alg = 'HS256',
    issuer = 'directus',
    expiresIn = '15m',
  }: { secret?: string; alg?: string; issuer?: string; expiresIn?: string | number | null } = {},
): Promise<string> {
  let jwt = new SignJWT({ id: USER, role: null, app_access: true, admin_access: false, ...claims })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(issuer);
  if (expiresIn !== null) jwt = jwt.setExpirationTime(expiresIn);
  return jwt.sign(new TextEncoder().encode(secret));
}

function unsigned(payload: Record<string, unknown>): string {
  const enc = (value: unknown) => base64url.encode(JSON.stringify(value));
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(payload)}.`;
}

async function refusal(promise: Promise<unknown>): Promise<AuthenticationError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthenticationError);
  return err as AuthenticationError;
}

describe('local verification (DIRECTUS_SECRET set)', () => {
  const verifier = new LocalTokenVerifier(SECRET);

  it('accepts a Directus access token and reads the user, expiry, login session and events claim', async () => {
    const token = await sign({ session: 'directus-session-1', pitwall_events: [3, 1] });
    const principal = await verifier.verify(token);
    expect(principal.userId).toBe(USER);
    expect(principal.expiresAtMs).toBeGreaterThan(Date.now());
    expect(principal.expiresAtMs % 1000).toBe(0);
    expect(principal.sessionKey).toBe('s:directus-session-1');
    expect(principal.eventsClaim).toEqual({ events: [3, 1], partial: false });
  });

  it('keys a token without a session claim by the token itself: two such tokens of one user are two sessions', async () => {
    const [a, b] = await Promise.all([verifier.verify(await sign({ n: 1 })), verifier.verify(await sign({ n: 2 }))]);
    expect(a.userId).toBe(b.userId);
    expect(a.sessionKey).not.toBe(b.sessionKey);
    expect(a.sessionKey).toMatch(/^t:/);
  });

  it('refuses a forged token (signed with another secret)', async () => {
    expect((await refusal(verifier.verify(await sign({}, { secret: 'not-the-secret' })))).expired).toBe(false);
  });

  it('refuses an expired token and says it expired', async () => {
    const token = await sign({}, { expiresIn: Math.floor(Date.now() / 1000) - 5 });
    expect((await refusal(verifier.verify(token))).expired).toBe(true);
  });

  it('refuses alg none', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refusal(verifier.verify(unsigned({ id: USER, iss: 'directus', iat: now, exp: now + 900 })));
  });

  it('refuses another algorithm even with the right secret', async () => {
    await refusal(verifier.verify(await sign({}, { alg: 'HS512' })));
  });

  it('refuses a wrong issuer', async () => {
    await refusal(verifier.verify(await sign({}, { issuer: 'someone-else' })));
  });

  it('refuses a token without expiry or without user', async () => {
    await refusal(verifier.verify(await sign({}, { expiresIn: null })));
    await refusal(verifier.verify(await sign({ id: undefined })));
  });

  it('refuses garbage', async () => {
    await refusal(verifier.verify('not.a.jwt'));
    await refusal(verifier.verify('x'));
  });
});

describe('verification by Directus /users/me (no secret): checks made before any call', () => {
  it('refuses bad tokens without asking Directus, and reports Directus down for a good-looking one', async () => {
    // Nothing listens on this port: a call would end as DirectusUnavailableError, not a refusal.
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const directus = testDirectusClient(`http://127.0.0.1:${await freePort()}`, { timeoutMs: 500, metrics });
    const verifier = new DirectusTokenVerifier(directus, metrics, { refusedTtlMs: 30_000 });
    const now = Math.floor(Date.now() / 1000);
    await refusal(verifier.verify(unsigned({ id: USER, iss: 'directus', exp: now + 900 })));
    await refusal(verifier.verify(await sign({}, { alg: 'HS512' })));
    await refusal(verifier.verify(await sign({}, { issuer: 'other' })));
    expect((await refusal(verifier.verify(await sign({}, { expiresIn: now - 1 })))).expired).toBe(true);
    await refusal(verifier.verify('opaque-static-token'));
    await expect(verifier.verify(await sign())).rejects.toBeInstanceOf(DirectusUnavailableError);
  });
});
