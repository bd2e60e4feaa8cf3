// Reading the k6 run's configuration from `-e NAME=value` / the environment (__ENV).

export function envString(name: string, fallback?: string): string {
  const value = __ENV[name]?.trim();
  if (value) return value;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is required (k6 run -e ${name}=...)`);
}

export function envOptional(name: string): string | undefined {
  const value = __ENV[name]?.trim();
  return value ? value : undefined;
}

export function envNumber(name: string, fallback: number): number {
  const raw = envOptional(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`);
  return value;
}

export function envList(name: string, fallback?: string): string[] {
  return envString(name, fallback)
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}
