/**
 * Loads libc through the running runtime's backend and prints one JSON line: the backend name on
 * success, or the error's class, fields and message. `test/libc-load.test.ts` runs it on Node,
 * Bun and Deno with `IPRE_LIBC` pointing at a missing library (src/ffi/symbols.ts).
 */
import { IpreError, LibcLoadError } from "../../src/errors.ts";
import { libc } from "../../src/ffi/index.ts";

export interface LibcLoadReport {
  ok: boolean;
  runtime: string;
  backend?: string;
  name?: string;
  isIpreError?: boolean;
  isLibcLoadError?: boolean;
  library?: string;
  errorRuntime?: string;
  hint?: string;
  message?: string;
  /** The first call failed the same way again: no half-loaded backend is left behind. */
  sameOnRetry?: boolean;
}

export function libcLoadReport(): LibcLoadReport {
  try {
    return { ok: true, runtime: libc.runtime, backend: `${libc.backend} pid ${libc.getpid()}` };
  } catch (e) {
    const err = e as LibcLoadError;
    let sameOnRetry = false;
    try {
      libc.getpid();
    } catch (again) {
      sameOnRetry = again instanceof LibcLoadError && again.message === err.message;
    }
    return {
      ok: false,
      runtime: libc.runtime,
      name: err.name,
      isIpreError: e instanceof IpreError,
      isLibcLoadError: e instanceof LibcLoadError,
      library: err.library,
      errorRuntime: err.runtime,
      hint: err.hint,
      message: err.message,
      sameOnRetry,
    };
  }
}

console.log(JSON.stringify(libcLoadReport()));
