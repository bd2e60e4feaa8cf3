/** Invalid or missing environment configuration. Code `CONFIG_INVALID`; `variables` names each bad one. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly { variable: string; message: string }[]) {
    super(`invalid configuration: ${problems.map((p) => `${p.variable}: ${p.message}`).join('; ')}`);
  }
  get variables(): string[] {
    return this.problems.map((p) => p.variable);
  }
}
