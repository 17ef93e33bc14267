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

/** The few bits of `bun:ffi` used here (its types are not visible to tsc). */
interface BunSymbolDef {
  readonly args: readonly string[];
  readonly returns: string;
}
type BunSymbol = (...args: number[]) => number | bigint;
interface BunFFI {
  dlopen(path: string, symbols: Record<string, BunSymbolDef>): {
    symbols: Record<string, BunSymbol>;
    close(): void;
  };
  toArrayBuffer(ptr: number, byteOffset: number, byteLength: number): ArrayBuffer;
  read: { i32(ptr: number, byteOffset?: number): number };
}
interface BunGlobal {
  readonly version: string;
}

const SYMBOLS: Record<string, BunSymbolDef> = {
  open: { args: ["ptr", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  // Fixed-arity ioctl: (int fd, unsigned long request, unsigned long arg).
  ioctl: { args: ["i32", "u64", "u64"], returns: "i32" },
  // i64_fast: a number when it fits (always, for user addresses and -1).
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "i64_fast" },
  munmap: { args: ["ptr", "u64"], returns: "i32" },
  madvise: { args: ["ptr", "u64", "i32"], returns: "i32" },
  memfd_create: { args: ["ptr", "u32"], returns: "i32" },
  ftruncate: { args: ["i32", "i64"], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
  gettid: { args: [], returns: "i32" },
  getpid: { args: [], returns: "i32" },
  timer_create: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  // timer_t is a pointer-sized value: u64.
  timer_settime: { args: ["u64", "i32", "ptr", "ptr"], returns: "i32" },
  timer_delete: { args: ["u64"], returns: "i32" },
  pthread_sigmask: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  sigtimedwait: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
};

/** Opens libc through `bun:ffi`, synchronously (`require` of a Bun builtin never blocks). */
export function load(): Libc {
  const ffi = createRequire(import.meta.url)("bun:ffi") as BunFFI;
  const s = ffi.dlopen("libc.so.6", SYMBOLS).symbols;
  // Symbols returning i32 give numbers already: hand them out unwrapped.
  const f = s as unknown as Record<string, (...args: number[]) => number>;
  const mmap = s.mmap!;
  const errnoLocation = f.__errno_location!;
  const { read, toArrayBuffer } = ffi;
  const version = (globalThis as unknown as { Bun?: BunGlobal }).Bun?.version ?? "?";

  return {
    runtime: "bun",
    backend: `bun:ffi (Bun ${version})`,
    open: f.open!,
    close: f.close!,
    ioctl: f.ioctl!,
    mmap: (addr, length, prot, flags, fd, offset) => Number(mmap(addr, length, prot, flags, fd, offset)),
    munmap: f.munmap!,
    madvise: f.madvise!,
    memfd_create: f.memfd_create!,
    ftruncate: f.ftruncate!,
    // __errno_location() is per thread; call it each time rather than caching the address.
    errno: () => read.i32(errnoLocation(), 0),
    gettid: f.gettid!,
    getpid: f.getpid!,
    timer_create: f.timer_create!,
    timer_settime: f.timer_settime!,
    timer_delete: f.timer_delete!,
    pthread_sigmask: f.pthread_sigmask!,
    sigtimedwait: f.sigtimedwait!,
    clock_gettime: f.clock_gettime!,
    view: (address, length) => toArrayBuffer(address, 0, length),
  };
}
