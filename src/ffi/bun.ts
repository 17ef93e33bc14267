/**
 * `Libc` on Bun through `bun:ffi`.
 *
 * bun:ffi JIT-compiles a C trampoline per symbol; numbers go straight into registers. Pointers
 * are plain numbers, so every address parameter is declared `ptr` (or `u64`) and takes a JS
 * number. Calls whose results fit in 32 bits are exposed as the raw symbol functions (no JS
 * wrapper on the hot path: `ioctl` is called for every KVM_RUN).
 */
import { createRequire } from "node:module";
import type { Libc } from "./libc.ts";
import { declareSymbols, type TypeMap } from "./symbols.ts";

/** The bun:ffi `FFIType` names used here. */
type BunType = "i32" | "u32" | "u64" | "i64" | "ptr" | "i64_fast";
/** The few bits of `bun:ffi` used here (its types are not visible to tsc). */
interface BunSymbolDef {
  readonly args: readonly BunType[];
  readonly returns: BunType;
}
type BunSymbol = (...args: number[]) => number;
interface BunFFI {
  dlopen<K extends string>(path: string, symbols: Record<K, BunSymbolDef>): { symbols: Record<K, BunSymbol>; close(): void };
  toArrayBuffer(ptr: number, byteOffset: number, byteLength: number): ArrayBuffer;
  read: { i32(ptr: number, byteOffset?: number): number };
}
interface BunGlobal {
  readonly version: string;
}

const TYPES: TypeMap<BunType> = {
  int: "i32",
  uint: "u32",
  ulong: "u64",
  off: "i64",
  address: "ptr",
  pointer: "ptr",
  // i64_fast: a number when it fits (always, for user addresses and -1).
  intptr: "i64_fast",
};

/** The bun:ffi declarations of every libc symbol (src/ffi/symbols.ts). */
export const BUN_SYMBOLS = declareSymbols((def) => ({ args: def.params.map((p) => TYPES[p]), returns: TYPES[def.result] }));

/** Opens `path` through `bun:ffi`, synchronously (`require` of a Bun builtin never blocks). */
export function load(path: string): Libc {
  const ffi = createRequire(import.meta.url)("bun:ffi") as BunFFI;
  // Every result here is a number (i32, ptr, i64_fast): the symbols are handed out unwrapped.
  const f = ffi.dlopen(path, BUN_SYMBOLS).symbols;
  const { read, toArrayBuffer } = ffi;
  const errnoLocation = f.__errno_location;
  const mmap = f.mmap as (...args: number[]) => number | bigint;
  const version = (globalThis as unknown as { Bun?: BunGlobal }).Bun?.version ?? "?";

  return {
    runtime: "bun",
    backend: `bun:ffi (Bun ${version})`,
    open: f.open,
    close: f.close,
    ioctl: f.ioctl,
    // i64_fast could still give a bigint for an address beyond 2^53; Number() keeps the contract.
    mmap: (addr, length, prot, flags, fd, offset) => Number(mmap(addr, length, prot, flags, fd, offset)),
    munmap: f.munmap,
    madvise: f.madvise,
    memfd_create: f.memfd_create,
    ftruncate: f.ftruncate,
    // __errno_location() is per thread; call it each time rather than caching the address.
    errno: () => read.i32(errnoLocation(), 0),
    gettid: f.gettid,
    getpid: f.getpid,
    timer_create: f.timer_create,
    timer_settime: f.timer_settime,
    timer_delete: f.timer_delete,
    pthread_sigmask: f.pthread_sigmask,
    sigtimedwait: f.sigtimedwait,
    clock_gettime: f.clock_gettime,
    view: (address, length) => toArrayBuffer(address, 0, length),
  };
}
