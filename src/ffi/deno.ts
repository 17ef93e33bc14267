/**
 * `Libc` on Deno through `Deno.dlopen` (needs `--allow-ffi`).
 *
 * Deno calls FFI symbols through V8 fast API calls when it can. *Measured* (Deno 2.9): a 64-bit
 * parameter (`u64`/`usize`/`i64`) given a JS *number* leaves the fast path (~+130 ns per call),
 * while the same parameter given a *bigint* stays on it; a `BigInt(n)` conversion costs ~20 ns.
 * So every 64-bit parameter is declared `u64`/`i64` and fed `BigInt(x)`; 32-bit ones take
 * numbers. 64-bit results come back as bigint and are converted with `Number()`.
 */
import type { Libc } from "./libc.ts";
import { declareSymbols, type TypeMap } from "./symbols.ts";

/** The Deno `NativeType` names used here. */
type DenoType = "i32" | "u32" | "u64" | "i64" | "pointer";
/** The few bits of the `Deno` namespace used here (its types are not visible to tsc). */
type DenoPointer = object;
interface DenoForeignFunction {
  readonly parameters: readonly DenoType[];
  readonly result: DenoType;
}
type DenoSymbol = (...args: (number | bigint)[]) => unknown;
interface DenoNamespace {
  readonly version: { readonly deno: string };
  dlopen<K extends string>(path: string, symbols: Record<K, DenoForeignFunction>): { symbols: Record<K, DenoSymbol>; close(): void };
  readonly UnsafePointer: {
    create(value: bigint): DenoPointer | null;
  };
  readonly UnsafePointerView: {
    new (pointer: DenoPointer): { getInt32(offset?: number): number };
    getArrayBuffer(pointer: DenoPointer, byteLength: number, offset?: number): ArrayBuffer;
  };
}

/** Addresses are `u64` (fed a bigint), not `pointer`: Deno's pointers are opaque objects. */
const TYPES: TypeMap<DenoType> = {
  int: "i32",
  uint: "u32",
  ulong: "u64",
  off: "i64",
  address: "u64",
  pointer: "pointer",
  intptr: "i64",
};

/** The Deno.dlopen declarations of every libc symbol (src/ffi/symbols.ts). */
export const DENO_SYMBOLS = declareSymbols((def) => ({ parameters: def.params.map((p) => TYPES[p]), result: TYPES[def.result] }));

/** Opens `path` through `Deno.dlopen` (synchronous); without `--allow-ffi` that throws `NotCapable`. */
export function load(path: string): Libc {
  const Deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
  const s = Deno.dlopen(path, DENO_SYMBOLS).symbols;
  // i32 results are numbers; the 64-bit ones (mmap) are bigints and the pointer is an object.
  const f = s as Record<keyof typeof s, (...args: (number | bigint)[]) => number>;
  const { open, close, ioctl, munmap, madvise, memfd_create, ftruncate, gettid, getpid } = f;
  const { timer_create, timer_settime, timer_delete, pthread_sigmask, sigtimedwait, clock_gettime } = f;
  const mmap = s.mmap as (...args: (number | bigint)[]) => bigint;
  const errnoLocation = s.__errno_location as () => DenoPointer;
  const { UnsafePointer, UnsafePointerView } = Deno;
  const B = BigInt;

  return {
    runtime: "deno",
    backend: `Deno.dlopen (Deno ${Deno.version.deno})`,
    open: (pathAddr, flags) => open(B(pathAddr), flags),
    close,
    ioctl: (fd, request, arg) => ioctl(fd, B(request), B(arg)),
    mmap: (addr, length, prot, flags, fd, offset) => Number(mmap(B(addr), B(length), prot, flags, fd, B(offset))),
    munmap: (addr, length) => munmap(B(addr), B(length)),
    madvise: (addr, length, advice) => madvise(B(addr), B(length), advice),
    memfd_create: (nameAddr, flags) => memfd_create(B(nameAddr), flags),
    ftruncate: (fd, length) => ftruncate(fd, B(length)),
    // __errno_location() is per thread; call it each time rather than caching the address.
    errno: () => new UnsafePointerView(errnoLocation()).getInt32(0),
    gettid,
    getpid,
    timer_create: (clockid, sevpAddr, timerIdAddr) => timer_create(clockid, B(sevpAddr), B(timerIdAddr)),
    timer_settime: (timerId, flags, newAddr, oldAddr) => timer_settime(B(timerId), flags, B(newAddr), B(oldAddr)),
    timer_delete: (timerId) => timer_delete(B(timerId)),
    pthread_sigmask: (how, setAddr, oldAddr) => pthread_sigmask(how, B(setAddr), B(oldAddr)),
    sigtimedwait: (setAddr, infoAddr, timeoutAddr) => sigtimedwait(B(setAddr), B(infoAddr), B(timeoutAddr)),
    clock_gettime: (clockid, tsAddr) => clock_gettime(clockid, B(tsAddr)),
    view: (address, length) => {
      const pointer = UnsafePointer.create(B(address));
      if (pointer === null) throw new RangeError("view: address 0 (NULL)");
      return UnsafePointerView.getArrayBuffer(pointer, length);
    },
  };
}
