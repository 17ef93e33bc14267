/**
 * Picks the FFI backend of the running JS runtime and exports the one `libc` everything above
 * `src/ffi/` uses.
 *
 * The backend loads lazily, on the first call (or the first read of `libc.backend`), and
 * synchronously: `bun:ffi` through `require`, `Deno.dlopen`, koffi through `require` (it is
 * CommonJS). So importing ipre never blocks and has no top-level await, which is what lets Node
 * `require("ipre")` (require(esm), Node >= 20.19 / 22.12), and importing alone needs no FFI
 * permission on Deno. Each backend module touches its runtime's FFI only inside `load()`: Deno
 * never loads koffi and Node never sees `bun:ffi`.
 *
 * The hot path stays as it was: `libc` is one object with a fixed shape whose function
 * properties start as stubs; the first stub called loads the backend and overwrites every stub
 * with the backend's own function (the same property set, so the object keeps its shape). From
 * then on `libc.ioctl(…)` is the backend's function, with no wrapper in between. *Measured*
 * (2-core PVM host, one process per variant, 3 M calls of `errno()` and 200 k of `ioctl(-1)`):
 * against the former top-level-await `libc`, no difference beyond the noise on Node, Bun or Deno
 * (errno() 19-22 ns vs 19-20 on Node, 13 vs 12-13 on Bun, 48-65 vs 47-68 on Deno).
 */
import { LibcLoadError } from "../errors.ts";
import { load as loadBun } from "./bun.ts";
import { load as loadDeno } from "./deno.ts";
import type { Libc, RuntimeName } from "./libc.ts";
import { load as loadNode } from "./node.ts";
import { LIBC_ENV, LIBC_PATH, libcPath } from "./symbols.ts";

export type { Libc, RuntimeName } from "./libc.ts";
export { LIBC_ENV, LIBC_PATH } from "./symbols.ts";

/** The JS runtime executing this module. */
export function detectRuntime(): RuntimeName {
  if ("Bun" in globalThis) return "bun";
  if ("Deno" in globalThis) return "deno";
  return "node";
}

/** Each backend: how it opens a library, and its name in errors. */
const BACKENDS: Record<RuntimeName, { load: (path: string) => Libc; name: string }> = {
  bun: { load: loadBun, name: "bun:ffi on Bun" },
  deno: { load: loadDeno, name: "Deno.dlopen on Deno" },
  node: { load: loadNode, name: "koffi on Node" },
};

/** What to do when `runtime` could not open `path`; `error` is what the backend threw. */
export function libcLoadHint(runtime: RuntimeName, path: string, error: unknown): string {
  const e = error as { name?: string; code?: string; message?: string } | null;
  const message = String(e?.message ?? error);
  if (runtime === "deno" && (e?.name === "NotCapable" || e?.name === "PermissionDenied" || /--allow-ffi/.test(message))) {
    return "Deno needs the FFI permission: deno run --allow-ffi --allow-read … (or --allow-all).";
  }
  if (runtime === "node" && e?.code === "MODULE_NOT_FOUND" && /koffi/.test(message)) {
    return "koffi is a dependency of ipre: reinstall (npm install), or run on Bun or Deno.";
  }
  const override = path === LIBC_PATH ? "" : `${LIBC_ENV}=${path} is set: unset it, or point it at the C library. `;
  return `${override}ipre needs a Linux x86-64 C library: ${LIBC_PATH} on glibc; on musl (Alpine) set ${LIBC_ENV}=/lib/libc.musl-x86_64.so.1 (or install gcompat).`;
}

/**
 * Loads the backend for `runtime` (normally {@link detectRuntime}) on the C library at `path`
 * (normally {@link LIBC_PATH}, or `$IPRE_LIBC`), synchronously. Throws a {@link LibcLoadError}
 * with a hint when the runtime cannot open it.
 */
export function loadLibc(runtime: RuntimeName = detectRuntime(), path: string = libcPath()): Libc {
  const backend = BACKENDS[runtime];
  try {
    return backend.load(path);
  } catch (e) {
    throw new LibcLoadError(path, runtime, backend.name, libcLoadHint(runtime, path, e), { cause: e });
  }
}

/** The function properties of {@link Libc}: the ones the first call replaces. */
type LibcFunctionName = { [K in keyof Libc]: Libc[K] extends (...args: never[]) => unknown ? K : never }[keyof Libc];

const runtime = detectRuntime();
let loaded: Libc | undefined;

/** The backend, loaded on first use; the stubs of {@link libc} are replaced by its functions. */
function backend(): Libc {
  if (loaded) return loaded;
  const real = loadLibc(runtime);
  const target = libc as unknown as Record<LibcFunctionName, unknown>;
  for (const name of Object.keys(libc) as (keyof Libc)[]) {
    if (name !== "runtime" && name !== "backend") target[name] = real[name];
  }
  return (loaded = real);
}

/** libc of the running runtime (its FFI backend loads on first use). */
export const libc: Libc = {
  runtime,
  get backend() {
    return backend().backend;
  },
  open: (pathAddr, flags) => backend().open(pathAddr, flags),
  close: (fd) => backend().close(fd),
  ioctl: (fd, request, arg) => backend().ioctl(fd, request, arg),
  mmap: (addr, length, prot, flags, fd, offset) => backend().mmap(addr, length, prot, flags, fd, offset),
  munmap: (addr, length) => backend().munmap(addr, length),
  madvise: (addr, length, advice) => backend().madvise(addr, length, advice),
  memfd_create: (nameAddr, flags) => backend().memfd_create(nameAddr, flags),
  ftruncate: (fd, length) => backend().ftruncate(fd, length),
  errno: () => backend().errno(),
  gettid: () => backend().gettid(),
  getpid: () => backend().getpid(),
  timer_create: (clockid, sevpAddr, timerIdAddr) => backend().timer_create(clockid, sevpAddr, timerIdAddr),
  timer_settime: (timerId, flags, newAddr, oldAddr) => backend().timer_settime(timerId, flags, newAddr, oldAddr),
  timer_delete: (timerId) => backend().timer_delete(timerId),
  pthread_sigmask: (how, setAddr, oldAddr) => backend().pthread_sigmask(how, setAddr, oldAddr),
  sigtimedwait: (setAddr, infoAddr, timeoutAddr) => backend().sigtimedwait(setAddr, infoAddr, timeoutAddr),
  clock_gettime: (clockid, tsAddr) => backend().clock_gettime(clockid, tsAddr),
  view: (address, length) => backend().view(address, length),
};
