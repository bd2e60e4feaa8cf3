/**
 * uWebSockets.js loaded its JavaScript fallback instead of its native binary (no binary for this
 * Node ABI, platform or libc). Code `UWS_NOT_NATIVE`.
 */
export class UwsNotNativeError extends Error {
  readonly code = 'UWS_NOT_NATIVE';
  override readonly name = 'UwsNotNativeError';
}
