/**
 * Picks the FFI backend of the running JS runtime and exports the one `libc` everything above
 * `src/ffi/` uses. Backends are loaded with a dynamic `import()` so Deno never loads koffi and
 * Node never sees `bun:ffi`.
 */
import type { Libc, RuntimeName } from "./libc.ts";

export type { Libc, RuntimeName } from "./libc.ts";

/** The JS runtime executing this module. */
export function detectRuntime(): RuntimeName {
  if ("Bun" in globalThis) return "bun";
  if ("Deno" in globalThis) return "deno";
  return "node";
}

/** Loads the backend for `runtime` (normally {@link detectRuntime}). */
export async function loadLibc(runtime: RuntimeName = detectRuntime()): Promise<Libc> {
  switch (runtime) {
    case "bun":
      return (await import("./bun.ts")).load();
    case "deno":
      return (await import("./deno.ts")).load();
    case "node":
      return (await import("./node.ts")).load();
  }
}

/** libc of the running runtime. */
export const libc: Libc = await loadLibc();
