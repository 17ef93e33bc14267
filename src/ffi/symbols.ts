import { envGet } from "../env.ts";

/**
 * The libc symbols ipre calls, declared once: the C prototype, then the parameter and result
 * types in a small neutral vocabulary that each backend maps to its own (`bun:ffi` FFIType,
 * Deno NativeType, koffi type names). `bun.ts`, `deno.ts` and `node.ts` derive their
 * declarations from {@link SYMBOLS}; a symbol added here is declared on all three runtimes.
 *
 * `ioctl` is variadic in C; it is declared with fixed arity `(int, unsigned long, unsigned long)`,
 * which every backend calls faster than a variadic function (docs/ARCHITECTURE.md §6).
 */

/**
 * How a value crosses the FFI boundary (x86-64 Linux, LP64). Every one is a JS number on the
 * {@link Libc} side; the backends differ in how they get it there.
 * - `int` / `uint`: 32-bit `int` / `unsigned int`.
 * - `ulong`: a 64-bit unsigned integer that is not an address (`unsigned long`, `size_t`, `timer_t`).
 * - `off`: a 64-bit signed integer (`off_t`).
 * - `address`: a pointer passed as its address.
 * - `pointer`: (result) a pointer the backend reads through (`__errno_location`).
 * - `intptr`: (result) an address or -1 (`mmap`'s `MAP_FAILED`).
 */
export type FfiType = "int" | "uint" | "ulong" | "off" | "address" | "pointer" | "intptr";

export interface SymbolDef {
  /** The C prototype, as the man page gives it (with ioctl's fixed arity). */
  readonly c: string;
  readonly params: readonly FfiType[];
  readonly result: FfiType;
}

/** The C library ipre opens on glibc systems; `IPRE_LIBC` overrides it (see {@link libcPath}). */
export const LIBC_PATH = "libc.so.6";

/** The environment variable that names another C library to open (musl, or a test). */
export const LIBC_ENV = "IPRE_LIBC";

export const SYMBOLS = {
  open: { c: "int open(const char *pathname, int flags)", params: ["address", "int"], result: "int" },
  close: { c: "int close(int fd)", params: ["int"], result: "int" },
  ioctl: { c: "int ioctl(int fd, unsigned long request, unsigned long arg)", params: ["int", "ulong", "ulong"], result: "int" },
  mmap: {
    c: "void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)",
    params: ["address", "ulong", "int", "int", "int", "off"],
    result: "intptr",
  },
  munmap: { c: "int munmap(void *addr, size_t length)", params: ["address", "ulong"], result: "int" },
  madvise: { c: "int madvise(void *addr, size_t length, int advice)", params: ["address", "ulong", "int"], result: "int" },
  memfd_create: { c: "int memfd_create(const char *name, unsigned int flags)", params: ["address", "uint"], result: "int" },
  ftruncate: { c: "int ftruncate(int fd, off_t length)", params: ["int", "off"], result: "int" },
  __errno_location: { c: "int *__errno_location(void)", params: [], result: "pointer" },
  gettid: { c: "pid_t gettid(void)", params: [], result: "int" },
  getpid: { c: "pid_t getpid(void)", params: [], result: "int" },
  timer_create: {
    c: "int timer_create(clockid_t clockid, struct sigevent *sevp, timer_t *timerid)",
    params: ["int", "address", "address"],
    result: "int",
  },
  // timer_t is a pointer-sized handle, passed by value: an integer, not an address we read.
  timer_settime: {
    c: "int timer_settime(timer_t timerid, int flags, const struct itimerspec *new_value, struct itimerspec *old_value)",
    params: ["ulong", "int", "address", "address"],
    result: "int",
  },
  timer_delete: { c: "int timer_delete(timer_t timerid)", params: ["ulong"], result: "int" },
  pthread_sigmask: { c: "int pthread_sigmask(int how, const sigset_t *set, sigset_t *oldset)", params: ["int", "address", "address"], result: "int" },
  sigtimedwait: {
    c: "int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)",
    params: ["address", "address", "address"],
    result: "int",
  },
  clock_gettime: { c: "int clock_gettime(clockid_t clockid, struct timespec *tp)", params: ["int", "address"], result: "int" },
} as const satisfies Record<string, SymbolDef>;

export type SymbolName = keyof typeof SYMBOLS;

/** Maps every symbol of {@link SYMBOLS} through `declare` (a backend's own declaration of it). */
export function declareSymbols<T>(declare: (def: SymbolDef, name: SymbolName) => T): Record<SymbolName, T> {
  const out = {} as Record<SymbolName, T>;
  for (const name of Object.keys(SYMBOLS) as SymbolName[]) out[name] = declare(SYMBOLS[name], name);
  return out;
}

/** A backend's type names, one per {@link FfiType}. */
export type TypeMap<T extends string = string> = Readonly<Record<FfiType, T>>;

/**
 * The C library to open: `$IPRE_LIBC` when it is set (e.g. `/lib/libc.musl-x86_64.so.1` on
 * Alpine; tests point it at a missing file), else {@link LIBC_PATH}. Deno without `--allow-env`
 * cannot read the environment; it then opens the default (without prompting).
 */
export function libcPath(): string {
  // envGet asks Deno first: without --allow-env it neither throws nor prompts.
  return envGet(LIBC_ENV) || LIBC_PATH;
}
