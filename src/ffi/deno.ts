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

/** The few bits of the `Deno` namespace used here (its types are not visible to tsc). */
type DenoPointer = object;
interface DenoForeignFunction {
  readonly parameters: readonly string[];
  readonly result: string;
}
interface DenoNamespace {
  readonly version: { readonly deno: string };
  dlopen(path: string, symbols: Record<string, DenoForeignFunction>): {
    symbols: Record<string, (...args: unknown[]) => unknown>;
    close(): void;
  };
  readonly UnsafePointer: {
    create(value: bigint): DenoPointer | null;
  };
  readonly UnsafePointerView: {
    new (pointer: DenoPointer): { getInt32(offset?: number): number };
    getArrayBuffer(pointer: DenoPointer, byteLength: number, offset?: number): ArrayBuffer;
  };
}

const SYMBOLS: Record<string, DenoForeignFunction> = {
  open: { parameters: ["u64", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // Fixed-arity ioctl: (int fd, unsigned long request, unsigned long arg).
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  mmap: { parameters: ["u64", "u64", "i32", "i32", "i32", "i64"], result: "i64" },
  munmap: { parameters: ["u64", "u64"], result: "i32" },
  madvise: { parameters: ["u64", "u64", "i32"], result: "i32" },
  memfd_create: { parameters: ["u64", "u32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  gettid: { parameters: [], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  timer_create: { parameters: ["i32", "u64", "u64"], result: "i32" },
  // timer_t is a pointer-sized value: u64.
  timer_settime: { parameters: ["u64", "i32", "u64", "u64"], result: "i32" },
  timer_delete: { parameters: ["u64"], result: "i32" },
  pthread_sigmask: { parameters: ["i32", "u64", "u64"], result: "i32" },
  sigtimedwait: { parameters: ["u64", "u64", "u64"], result: "i32" },
  clock_gettime: { parameters: ["i32", "u64"], result: "i32" },
};

/** Opens libc through `Deno.dlopen` (synchronous); without `--allow-ffi` that throws `NotCapable`. */
export function load(): Libc {
  const Deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;
  const s = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  type F = (...args: (number | bigint)[]) => number;
  const f = s as unknown as Record<string, F>;
  const open = f.open!, close = f.close!, ioctl = f.ioctl!, munmap = f.munmap!, madvise = f.madvise!;
  const memfd_create = f.memfd_create!, ftruncate = f.ftruncate!, gettid = f.gettid!, getpid = f.getpid!;
  const timer_create = f.timer_create!, timer_settime = f.timer_settime!, timer_delete = f.timer_delete!;
  const pthread_sigmask = f.pthread_sigmask!, sigtimedwait = f.sigtimedwait!, clock_gettime = f.clock_gettime!;
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
