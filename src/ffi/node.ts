/**
 * `Libc` on Node through koffi 3.x (prebuilt N-API module shipped in the npm package).
 *
 * Every address parameter is declared `uintptr_t` so it takes a plain JS number (koffi 3
 * represents `void *` as bigint, which we avoid on the hot path). `ioctl` is declared with fixed
 * arity, which is faster than koffi's variadic call. errno is captured by koffi after each call
 * and read with `koffi.errno()`. `koffi.view()` accepts a numeric address directly.
 */
import { createRequire } from "node:module";
import type { Libc } from "./libc.ts";
import { declareSymbols, type TypeMap } from "./symbols.ts";

type KoffiFn = (...args: number[]) => number;
/** The few bits of koffi used here. */
interface Koffi {
  load(path: string): { func(name: string, result: string, args: readonly string[]): KoffiFn };
  errno(): number;
  view(pointer: number | bigint, length: number): ArrayBuffer;
  readonly version?: string;
}

const TYPES: TypeMap = {
  int: "int",
  uint: "unsigned int",
  ulong: "unsigned long",
  off: "int64_t",
  address: "uintptr_t",
  pointer: "uintptr_t",
  // intptr_t: MAP_FAILED comes back as -1.
  intptr: "intptr_t",
};

/** The koffi declarations (result, parameters) of every libc symbol (src/ffi/symbols.ts). */
export const KOFFI_SYMBOLS = declareSymbols((def) => ({ result: TYPES[def.result], params: def.params.map((p) => TYPES[p]) }));

/**
 * Loads koffi with a synchronous `require` (koffi is CommonJS), so that loading ipre never needs
 * a top-level await and `require("ipre")` works where Node supports require(esm), then opens
 * `path` with it.
 */
export function load(path: string): Libc {
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const lib = koffi.load(path);
  const f = declareSymbols((_def, name) => lib.func(name, KOFFI_SYMBOLS[name].result, KOFFI_SYMBOLS[name].params));
  const mmap = f.mmap as (...args: number[]) => number | bigint;

  return {
    runtime: "node",
    backend: `koffi ${koffi.version ?? "?"}`,
    open: f.open,
    close: f.close,
    ioctl: f.ioctl,
    // intptr_t results are numbers when they fit; Number() also covers a bigint.
    mmap: (addr, length, prot, flags, fd, offset) => Number(mmap(addr, length, prot, flags, fd, offset)),
    munmap: f.munmap,
    madvise: f.madvise,
    memfd_create: f.memfd_create,
    ftruncate: f.ftruncate,
    errno: () => koffi.errno(),
    gettid: f.gettid,
    getpid: f.getpid,
    timer_create: f.timer_create,
    timer_settime: f.timer_settime,
    timer_delete: f.timer_delete,
    pthread_sigmask: f.pthread_sigmask,
    sigtimedwait: f.sigtimedwait,
    clock_gettime: f.clock_gettime,
    view: (address, length) => koffi.view(address, length),
  };
}
