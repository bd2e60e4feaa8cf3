import uWS from 'uWebSockets.js';
import { UwsNotNativeError } from './uws-not-native-error.js';

/** Exit code of a gateway that refuses to start on the fallback (EX_UNAVAILABLE: a required component is missing). */
export const EXIT_UWS_NOT_NATIVE = 69;

/**
 * Whether `module` is uWebSockets.js's native binding. The npm build falls back to a JavaScript
 * implementation over `ws` (with one warning line) when it has no binary for the running Node ABI,
 * platform or libc: an order of magnitude slower, and without topics' native fan-out. The native
 * binding's functions are native code; the fallback's are JavaScript and it lacks most of the API.
 */
export function isNativeUws(module: object = uWS): boolean {
  const exports = module as Record<string, unknown>;
  const app = exports.App;
  return (
    typeof app === 'function' &&
    /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(app)) &&
    typeof exports.getParts === 'function' &&
    typeof exports.DISABLED === 'number'
  );
}

/** Throws UwsNotNativeError unless the loaded uWebSockets.js is the native build. */
export function assertNativeUws(module: object = uWS): void {
  if (isNativeUws(module)) return;
  throw new UwsNotNativeError(
    `uWebSockets.js is not its native build on Node ${process.versions.node} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}): ` +
      'it fell back to a slow JavaScript implementation. Run the gateway on a Node version the installed uWebSockets.js ships a binary for ' +
      '(this build: Node 16, 18 and 20 on glibc), or install a build for this one.',
  );
}
