/** Helpers shared by the scenario scripts (runtime-neutral: no Node-only APIs beyond node:fs). */
import { readFileSync } from "node:fs";
import {
  ElfError, GuestCrash, GuestFault, GuestMemoryError, IpreError, KvmError, LibcLoadError, MachineStateError,
  OsError, RemoteAccessError, RemoteFault, TimeoutError,
} from "../../src/errors.ts";

export function env(name: string): string | undefined {
  const g = globalThis as { Deno?: { env: { get(n: string): string | undefined } }; process?: { env: Record<string, string | undefined> } };
  return g.process?.env?.[name] ?? g.Deno?.env.get(name);
}

/** Inside the nested harness (scripts/nested-kvm.sh, docs/ARCHITECTURE.md §8): emulated, slow. */
export const NESTED = env("IPRE_NESTED") === "1";

/**
 * How much slower this environment is than the host it was measured against: the harness
 * measures it in each run (IPRE_NESTED_SLOWDOWN); 1 natively. Only *upper* bounds on wall-clock
 * time are scaled by it, never lower bounds, so a timeout that fires early still fails.
 */
export const SLOWDOWN = NESTED ? Math.max(1, Number(env("IPRE_NESTED_SLOWDOWN")) || 50) : 1;

/** A wall-clock upper bound (or a time limit) in ms, scaled by SLOWDOWN. */
export function upperMs(ms: number): number {
  return Math.round(ms * SLOWDOWN);
}

/** An iteration count: `n` natively, `n / nestedDivisor` (at least `min`) in the nested harness. */
export function scaled(n: number, nestedDivisor = 10, min = 1): number {
  return NESTED ? Math.max(min, Math.round(n / nestedDivisor)) : n;
}

/** Bytes of guests/examples/<name>.elf. */
export function exampleElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../../guests/examples/${name}.elf`, import.meta.url)));
}

/** mulberry32: the same pseudo-random sequence on every runtime, so the test can recompute inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The next state of Marsaglia's 32-bit xorshift (13, 17, 5): a worker's own cheap sequence of request inputs. */
export function xorshift32(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  return x ^ (x << 5);
}

/** An integer in [lo, hi] from `r`. */
export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

const CLASSES = [
  ["IpreError", IpreError], ["OsError", OsError], ["KvmError", KvmError], ["LibcLoadError", LibcLoadError], ["ElfError", ElfError], ["GuestFault", GuestFault],
  ["GuestCrash", GuestCrash], ["GuestMemoryError", GuestMemoryError], ["RemoteAccessError", RemoteAccessError],
  ["RemoteFault", RemoteFault], ["TimeoutError", TimeoutError], ["MachineStateError", MachineStateError],
] as const;

/** What a call did, in JSON: its value, or the error with every ipre class it is an instance of. */
export interface Outcome {
  ok: boolean;
  value?: unknown;
  name?: string;
  message?: string;
  classes?: string[];
  vector?: number;
  cr2?: number;
  errorCode?: number;
  rip?: number;
  address?: number;
  remoteName?: string;
}

export function outcome(fn: () => unknown): Outcome {
  try {
    const value = fn();
    return { ok: true, value: typeof value === "bigint" ? `${value}n` : value };
  } catch (e) {
    const err = e as Record<string, unknown> & Error;
    const out: Outcome = { ok: false, name: err?.name, message: err?.message, classes: CLASSES.filter(([, C]) => e instanceof C).map(([n]) => n) };
    // A GuestCrash carries the exception behind it (if any) in `fault`.
    const src = (err instanceof GuestCrash && err.fault ? err.fault : err) as Record<string, unknown>;
    for (const k of ["vector", "cr2", "errorCode", "rip", "address"] as const) if (typeof src[k] === "number") out[k] = src[k] as number;
    if (typeof err.remoteName === "string") out.remoteName = err.remoteName;
    return out;
  }
}

/** Command-line arguments on Bun, Deno and Node. */
export function scenarioArgs(): string[] {
  const g = globalThis as { Deno?: { args: string[] }; process?: { argv: string[] } };
  return g.Deno?.args ?? g.process?.argv.slice(2) ?? [];
}

/** Whether the module is the program's entry point (import.meta.main on Bun and Deno; argv[1] on Node). */
export function isMain(meta: ImportMeta): boolean {
  const main = (meta as ImportMeta & { main?: boolean }).main;
  if (main !== undefined) return main;
  const argv1 = (globalThis as { process?: { argv: string[] } }).process?.argv[1];
  return typeof argv1 === "string" && decodeURIComponent(new URL(meta.url).pathname) === argv1;
}
