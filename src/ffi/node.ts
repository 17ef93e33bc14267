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

type KoffiFn = (...args: number[]) => number | bigint;
/** The few bits of koffi used here. */
interface Koffi {
  load(path: string): { func(name: string, result: string, args: string[]): KoffiFn };
  errno(): number;
  view(pointer: number | bigint, length: number): ArrayBuffer;
  readonly version?: string;
}

const SYMBOLS: Record<string, [result: string, args: string[]]> = {
  open: ["int", ["uintptr_t", "int"]],
  close: ["int", ["int"]],
  // Fixed-arity ioctl: (int fd, unsigned long request, unsigned long arg).
  ioctl: ["int", ["int", "unsigned long", "uintptr_t"]],
  // intptr_t: MAP_FAILED comes back as -1.
  mmap: ["intptr_t", ["uintptr_t", "size_t", "int", "int", "int", "int64_t"]],
  munmap: ["int", ["uintptr_t", "size_t"]],
  madvise: ["int", ["uintptr_t", "size_t", "int"]],
  memfd_create: ["int", ["uintptr_t", "unsigned int"]],
  ftruncate: ["int", ["int", "int64_t"]],
  gettid: ["int", []],
  getpid: ["int", []],
  timer_create: ["int", ["int", "uintptr_t", "uintptr_t"]],
  // timer_t is a pointer-sized value.
  timer_settime: ["int", ["uintptr_t", "int", "uintptr_t", "uintptr_t"]],
  timer_delete: ["int", ["uintptr_t"]],
  pthread_sigmask: ["int", ["int", "uintptr_t", "uintptr_t"]],
  sigtimedwait: ["int", ["uintptr_t", "uintptr_t", "uintptr_t"]],
  clock_gettime: ["int", ["int", "uintptr_t"]],
};

/**
 * Loads koffi with a synchronous `require` (koffi is CommonJS), so that loading ipre never needs
 * a top-level await and `require("ipre")` works where Node supports require(esm).
 */
export function load(): Libc {
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const lib = koffi.load("libc.so.6");
  const f: Record<string, (...args: number[]) => number> = {};
  for (const [name, [result, args]] of Object.entries(SYMBOLS)) {
    f[name] = lib.func(name, result, args) as (...args: number[]) => number;
  }
  const mmap = f.mmap!;

  return {
    runtime: "node",
    backend: `koffi ${koffi.version ?? "?"}`,
    open: f.open!,
    close: f.close!,
    ioctl: f.ioctl!,
    // intptr_t results are numbers when they fit; Number() also covers a bigint.
    mmap: (addr, length, prot, flags, fd, offset) => Number(mmap(addr, length, prot, flags, fd, offset)),
    munmap: f.munmap!,
    madvise: f.madvise!,
    memfd_create: f.memfd_create!,
    ftruncate: f.ftruncate!,
    errno: () => koffi.errno(),
    gettid: f.gettid!,
    getpid: f.getpid!,
    timer_create: f.timer_create!,
    timer_settime: f.timer_settime!,
    timer_delete: f.timer_delete!,
    pthread_sigmask: f.pthread_sigmask!,
    sigtimedwait: f.sigtimedwait!,
    clock_gettime: f.clock_gettime!,
    view: (address, length) => koffi.view(address, length),
  };
}
