import { homedir } from 'node:os';
import { join } from 'node:path';

/** What the tools compile or download once lives here, outside the clone: `${XDG_CACHE_HOME:-~/.cache}/pitwall` (PITWALL_CACHE overrides). */
export function cacheRoot(): string {
  return process.env.PITWALL_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pitwall');
}
