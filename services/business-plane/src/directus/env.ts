import { join } from 'node:path';

export interface DirectusEnvOptions {
  /** Folder of the Directus installation (its package.json: where Directus looks for npm-installed extensions). */
  installationDir: string;
  databaseUrl: string;
  port: number;
  host: string;
  publicUrl: string;
  key: string;
  secret: string;
  dataDir: string;
  accessTokenTtl: string;
  adminEmail?: string;
  adminPassword?: string;
  extra?: Record<string, string>;
}

/** EXTENSIONS_PATH of a Directus whose uploads and extensions live in `dataDir`. */
export function directusExtensionsPath(dataDir: string): string {
  return join(dataDir, 'extensions');
}

/**
 * The environment of one Directus process. Built from scratch (not inherited) so that nothing of the
 * test runner (NODE_OPTIONS, loaders) leaks into a Node 22 process.
 */
export function directusEnv(options: DirectusEnvOptions): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    NODE_ENV: 'production',
    KEY: options.key,
    SECRET: options.secret,
    PUBLIC_URL: options.publicUrl,
    HOST: options.host,
    PORT: String(options.port),
    DB_CLIENT: 'pg',
    DB_CONNECTION_STRING: options.databaseUrl,
    // No phoning home, no background work that would make tests or a 2-core laptop flaky.
    TELEMETRY: 'false',
    WEBSOCKETS_ENABLED: 'false',
    // Off so a permission change applies to the very next request (revocation tests rely on it).
    CACHE_ENABLED: 'false',
    RATE_LIMITER_ENABLED: 'false',
    RATE_LIMITER_GLOBAL_ENABLED: 'false',
    // It answers 503 when the event loop lags, which a loaded CI machine does: not what is under test.
    PRESSURE_LIMITER_ENABLED: 'false',
    ACCESS_TOKEN_TTL: options.accessTokenTtl,
    // The live map is served from another port and logs in from the browser.
    CORS_ENABLED: 'true',
    CORS_ORIGIN: 'true',
    LOG_LEVEL: 'warn',
    LOG_STYLE: 'raw',
    STORAGE_LOCATIONS: 'local',
    STORAGE_LOCAL_ROOT: join(options.dataDir, 'uploads'),
    EXTENSIONS_PATH: directusExtensionsPath(options.dataDir),
    EXTENSIONS_AUTO_RELOAD: 'false',
    // Directus reads this package.json's dependencies for npm-installed extensions; the default (the
    // working directory, the data folder here) has none, which EXTENSIONS_MUST_LOAD turns into a failure.
    PACKAGE_FILE_LOCATION: options.installationDir,
    // An extension that does not load (a bad PITWALL_EVENTS_CLAIM_* value) stops Directus at start
    // instead of leaving it running without the claim.
    EXTENSIONS_MUST_LOAD: 'true',
    ...(options.adminEmail ? { ADMIN_EMAIL: options.adminEmail } : {}),
    ...(options.adminPassword ? { ADMIN_PASSWORD: options.adminPassword } : {}),
    ...options.extra,
  };
}
