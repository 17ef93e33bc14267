/**
 * Execution timeouts without signal handlers or helper threads (docs/ARCHITECTURE.md §7).
 *
 * The thread that runs vCPUs blocks a real-time signal; each vCPU gets KVM_SET_SIGNAL_MASK with
 * the thread's mask minus that signal, so the signal can arrive only *inside* KVM_RUN, where it
 * makes the ioctl return EINTR. A per-thread POSIX timer (SIGEV_THREAD_ID) delivers it; the
 * pending signal is then drained with sigtimedwait and never reaches the runtime.
 */
import { libc } from "./ffi/index.ts";
import { CLOCK_MONOTONIC, NativeBuffer, SIG_BLOCK } from "./ffi/native.ts";
import { OsError } from "./errors.ts";
import type { Vcpu } from "./kvm/vcpu.ts";

/** The real-time signal used for timeouts (not SIGUSR1: Node's inspector; not SIGUSR2: JSC). */
export const TIMEOUT_SIGNAL = 40;
const SIGEV_THREAD_ID = 4;

/** One per thread that runs vCPUs: the blocked signal and the timer aimed at this thread. */
export class Watchdog {
  readonly tid: number;
  /** The thread's signal mask before we blocked TIMEOUT_SIGNAL, without it: for KVM_SET_SIGNAL_MASK. */
  readonly kvmMask: bigint;
  #timerId: number;
  #buf: NativeBuffer;
  #armed = false;

  private constructor(tid: number, kvmMask: bigint, timerId: number, buf: NativeBuffer) {
    this.tid = tid;
    this.kvmMask = kvmMask;
    this.#timerId = timerId;
    this.#buf = buf;
  }

  static #byThread = new Map<number, Watchdog>();

  /** Drain a stray TIMEOUT_SIGNAL of the calling thread, if this thread has a watchdog at all; true when one was pending. */
  static drainStray(): boolean {
    return Watchdog.#byThread.size > 0 && (Watchdog.#byThread.get(libc.gettid())?.drain() ?? false);
  }

  /** The watchdog of the calling thread (created on first use, kept for the thread's life). */
  static forThisThread(): Watchdog {
    const tid = libc.gettid();
    let w = Watchdog.#byThread.get(tid);
    if (!w) {
      w = Watchdog.#create(tid);
      Watchdog.#byThread.set(tid, w);
    }
    return w;
  }

  static #create(tid: number): Watchdog {
    // Layout of the scratch page: [0] sigset to block, [16] old sigset, [64] struct sigevent,
    // [192] timer_t, [256] itimerspec, [320] siginfo, [512] zero timespec.
    const buf = NativeBuffer.alloc(4096);
    const bit = 1n << BigInt(TIMEOUT_SIGNAL - 1);
    buf.view.setBigUint64(0, bit, true);
    const r = libc.pthread_sigmask(SIG_BLOCK, buf.address, buf.address + 16);
    if (r !== 0) {
      buf.close();
      throw new OsError("pthread_sigmask", r);
    }
    const oldMask = buf.view.getBigUint64(16, true);
    // struct sigevent: sigev_value (8), sigev_signo at 8, sigev_notify at 12, _tid at 16.
    buf.view.setInt32(64 + 8, TIMEOUT_SIGNAL, true);
    buf.view.setInt32(64 + 12, SIGEV_THREAD_ID, true);
    buf.view.setInt32(64 + 16, tid, true);
    if (libc.timer_create(CLOCK_MONOTONIC, buf.address + 64, buf.address + 192) < 0) {
      const errno = libc.errno();
      buf.close();
      throw new OsError("timer_create", errno);
    }
    const timerId = Number(buf.view.getBigInt64(192, true));
    return new Watchdog(tid, oldMask & ~bit, timerId, buf);
  }

  /** Arm the one-shot timer: TIMEOUT_SIGNAL arrives after `ms` (0 disarms). */
  arm(ms: number): void {
    const dv = this.#buf.view;
    const sec = Math.floor(ms / 1000);
    const nsec = Math.round((ms - sec * 1000) * 1e6);
    // struct itimerspec { it_interval; it_value; } of struct timespec { tv_sec; tv_nsec; }
    dv.setBigInt64(256, 0n, true);
    dv.setBigInt64(264, 0n, true);
    dv.setBigInt64(272, BigInt(sec), true);
    dv.setBigInt64(280, BigInt(nsec), true);
    if (libc.timer_settime(this.#timerId, 0, this.#buf.address + 256, 0) < 0) throw new OsError("timer_settime", libc.errno());
    this.#armed = ms > 0;
  }

  disarm(): void {
    if (this.#armed) this.arm(0);
  }

  /** Consume a pending TIMEOUT_SIGNAL, if any (zero timeout); true when one was pending. */
  drain(): boolean {
    // sigtimedwait(set = {TIMEOUT_SIGNAL}, info, timeout = {0, 0})
    return libc.sigtimedwait(this.#buf.address, this.#buf.address + 320, this.#buf.address + 512) === TIMEOUT_SIGNAL;
  }
}

/** The calling thread's watchdog, armed for `timeoutMs`, with its signal mask installed on `vcpu`. */
export function armWatchdog(vcpu: Vcpu, timeoutMs: number): Watchdog {
  const w = Watchdog.forThisThread();
  vcpu.useThreadMask(w.tid, w.kvmMask);
  w.arm(timeoutMs);
  return w;
}
