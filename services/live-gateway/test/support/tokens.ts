import { SignJWT } from 'jose';

/** A token shaped like a Directus access token (HS256, issuer directus), signed with `secret`. */
export function directusLikeToken(
  secret: string,
  {
    userId = 'b1f0c1a2-0000-4000-8000-00000000000a',
    expiresAtS = Math.floor(Date.now() / 1000) + 900,
    issuer = 'directus',
    alg = 'HS256',
  } = {},
): Promise<string> {
  return new SignJWT({ id: userId, role: null, app_access: false, admin_access: false })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(issuer)
    .setExpirationTime(expiresAtS)
    .sign(new TextEncoder().encode(secret));
}
