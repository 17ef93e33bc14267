/**
 * The one libc interface that everything above `src/ffi/` uses.
 *
 * Every argument and result is a plain JS number: file descriptors, ioctl requests, and native
 * addresses (x86-64 user addresses fit in 47 bits, well inside Number.MAX_SAFE_INTEGER). Calls
 * that take a C string or a struct take the *address* of native memory that the caller owns
 * (see {@link NativeScratch}); this keeps the three backends symmetric and the hot path free of
 * typed-array marshalling.
 *
 * Functions return what libc returns (-1 on failure for most); read {@link Libc.errno} right
 * after a failing call. Nothing here throws on a failing syscall: callers throw the typed errors
 * of `src/errors.ts` (`KvmError` for KVM ioctls, `OsError` for the other calls).
 */
export type RuntimeName = "node" | "bun" | "deno";

export interface Libc {
  /** Which JS runtime is executing. */
  readonly runtime: RuntimeName;
  /** Human readable name of the FFI backend, e.g. "bun:ffi", "Deno.dlopen", "koffi 3.3.4". */
  readonly backend: string;

  open(pathAddr: number, flags: number): number;
  close(fd: number): number;
  /** `ioctl(fd, request, arg)` where arg is an integer or a native address. */
  ioctl(fd: number, request: number, arg: number): number;
  /** Returns the mapped address, or -1 (MAP_FAILED). */
  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number;
  munmap(addr: number, length: number): number;
  madvise(addr: number, length: number, advice: number): number;
  memfd_create(nameAddr: number, flags: number): number;
  ftruncate(fd: number, length: number): number;
  /** errno of the calling thread, as left by the last failing call. */
  errno(): number;
  gettid(): number;
  getpid(): number;
  /** `timer_create(clockid, struct sigevent *sevp, timer_t *timerid)`. */
  timer_create(clockid: number, sevpAddr: number, timerIdAddr: number): number;
  /** `timer_settime(timer_t timerid, int flags, new_value*, old_value*)`; timerid is the value timer_create stored. */
  timer_settime(timerId: number, flags: number, newValueAddr: number, oldValueAddr: number): number;
  timer_delete(timerId: number): number;
  /** `pthread_sigmask(how, set*, oldset*)` on the calling thread; returns 0 or an errno value. */
  pthread_sigmask(how: number, setAddr: number, oldSetAddr: number): number;
  /** `sigtimedwait(set*, siginfo*, timespec*)`: the signal number, or -1. */
  sigtimedwait(setAddr: number, infoAddr: number, timeoutAddr: number): number;
  /** `clock_gettime(clockid, timespec*)`. */
  clock_gettime(clockid: number, tsAddr: number): number;

  /** A zero-copy ArrayBuffer over native memory [address, address + length). */
  view(address: number, length: number): ArrayBuffer;
}
