// The parts of Directus 11's hook API this extension uses, typed structurally: the extension ships as
// plain compiled JavaScript with no dependency (Directus hands it its services through the register
// context), so it does not import Directus's own type packages. The real-Directus tests are what keep
// these in step with Directus.

/** Directus's accountability (@directus/types Accountability): who a service acts for. */
export interface Accountability {
  user: string | null;
  role: string | null;
  /** The user's role and its ancestors, root first: every role whose policies apply. */
  roles: string[];
  admin: boolean;
  app: boolean;
  ip: string | null;
  userAgent?: string;
  origin?: string;
}

export type Filter = Record<string, unknown>;

export interface Query {
  fields?: string[];
  filter?: Filter;
  sort?: string[];
  limit?: number;
}

export type Item = Record<string, unknown>;

export interface ItemsService {
  readByQuery(query: Query, opts?: { emitEvents?: boolean }): Promise<Item[]>;
}

/** Directus's opaque schema overview (getSchema()); only handed back to services. */
export type SchemaOverview = object;

/** The subset of a knex instance used to walk the role tree. */
export interface Database {
  (table: string): RoleQuery;
}

export interface RoleQuery {
  select(...columns: string[]): RoleQuery;
  where(column: string, value: string): RoleQuery;
  first(): Promise<{ id: string; parent: string | null } | undefined>;
}

export type ItemsServiceClass = new (
  collection: string,
  options: { schema: SchemaOverview; knex?: Database; accountability: Accountability | null },
) => ItemsService;

export interface Logger {
  info(object: Record<string, unknown>, message: string): void;
  warn(object: Record<string, unknown>, message: string): void;
}

/** Second argument of a filter handler. */
export interface FilterMeta {
  event: string;
  /** auth.jwt: 'login' or 'refresh'. */
  type?: string;
  user?: string | null;
  provider?: string;
}

/** Third argument of a filter handler (auth.jwt: the login's transaction, schema and the request's accountability). */
export interface EventContext {
  database?: Database;
  schema?: SchemaOverview | null;
  accountability?: Partial<Accountability> | null;
}

export type FilterHandler = (payload: Record<string, unknown>, meta: FilterMeta, context: EventContext) => Promise<Record<string, unknown>>;

/** First argument of a hook's register function. */
export interface RegisterFunctions {
  filter: (event: string, handler: FilterHandler) => void;
  action: (event: string, handler: () => void) => void;
}

/** Second argument of a hook's register function. */
export interface HookContext {
  services: { ItemsService: ItemsServiceClass };
  env: Record<string, unknown>;
  database: Database;
  logger: Logger;
  getSchema(): Promise<SchemaOverview>;
}

/** Directus errors carry a stable code; FORBIDDEN: no permission at all for what was asked. */
export function directusErrorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
