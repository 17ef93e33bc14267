/**
 * The process, time and identity system calls of a Linux program, answered as Linux answers a
 * single process with pid 1 that has no children (src/linux/syscalls.ts dispatches here):
 * clocks and sleeps, uname, limits, prctl, sysinfo, getrusage, process groups, CPU affinity,
 * sockets (none: EAFNOSUPPORT) and the calls that would make another process (fork, clone
 * without CLONE_THREAD, execve of another program: ENOSYS, told once; wait4: ECHILD).
 */
import type { Cpu, Space } from "../engine/owners.ts";
import { timedOut } from "../engine/faults.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { E } from "./abi.ts";

/** x86-64 numbers of the calls this file serves. */
export const MISC_NR = {
  nanosleep: 35, getpid: 39, socket: 41, socketpair: 53, clone: 56, fork: 57, vfork: 58, wait4: 61, uname: 63,
  gettimeofday: 96, getrlimit: 97, getrusage: 98, sysinfo: 99, times: 100, getuid: 102, getgid: 104, setuid: 105,
  setgid: 106, geteuid: 107, getegid: 108, setpgid: 109, getppid: 110, getpgrp: 111, setsid: 112, getgroups: 115,
  getpgid: 121, getsid: 124, prctl: 157, gettid: 186, time: 201, sched_setaffinity: 203, sched_getaffinity: 204,
  clock_gettime: 228, clock_getres: 229, clock_nanosleep: 230, waitid: 247, prlimit64: 302, getrandom: 318,
  clone3: 435, sched_yield: 24,
} as const;

/** The single process: pid = tid = pgid = sid = 1. */
export const PID = 1;
const RLIMIT_STACK = 3;
const RLIMIT_NOFILE = 7;
const RLIM_INFINITY = 0xffffffffffffffffn;
const PR = { SET_PDEATHSIG: 1, GET_PDEATHSIG: 2, GET_DUMPABLE: 3, SET_DUMPABLE: 4, SET_NAME: 15, GET_NAME: 16 } as const;
const encoder = new TextEncoder();

/** What these calls keep of a process: its name (prctl), parent-death signal, dumpable flag, start time. */
export class ProcessInfo {
  comm = new Uint8Array(16);
  pdeathsig = 0;
  dumpable = 1;
  readonly startMs = performance.now();
  /** `space`: where the process runs (its memory and stack size). */
  constructor(readonly space: Space, path: string) {
    this.comm.set(encoder.encode(path.split("/").pop() ?? "").subarray(0, 15));
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * Really sleep `ms` on this thread (Atomics.wait), in slices of at most 50 ms; past the running
 * call's deadline the sleep ends as that call's TimeoutError (the vCPU is parked at the syscall).
 */
export function sleepMs(r: Cpu, ms: number): void {
  const end = performance.now() + ms;
  for (;;) {
    const now = performance.now();
    if (r.callDeadline > 0 && now >= r.callDeadline) {
      r.markTimedOut();
      throw timedOut(r, r.callTimeoutMs, now - (r.callDeadline - r.callTimeoutMs));
    }
    if (now >= end) return;
    Atomics.wait(sleepCell, 0, 0, Math.min(50, (r.callDeadline > 0 ? Math.min(end, r.callDeadline) : end) - now));
  }
}

/** Nanoseconds of a clock: CLOCK_REALTIME (0) and its coarse/TAI variants from the epoch, the rest monotonic. */
export function clockNs(clock: number): bigint {
  if (clock === 0 || clock === 5 || clock === 11) return BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor((performance.now() % 1) * 1e6));
  return BigInt(Math.floor(performance.now() * 1e6));
}

/** Little-endian 64-bit words into guest memory at `addr`. */
function putWords(r: Cpu, addr: number, words: (number | bigint)[]): void {
  const b = guestRange(r, addr, words.length * 8, true);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  words.forEach((w, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, BigInt(w)), true));
}

/** A NULL-terminated array of C strings at `at` (execve's argv and envp; NULL: none). */
export function guestStrings(r: Cpu, at: number): string[] {
  const out: string[] = [];
  for (let i = 0; at !== 0 && i < 4096; i++) {
    const b = guestRange(r, at + i * 8, 8, false);
    const p = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
    if (p === 0) break;
    out.push(guestCString(r, p, 131072));
  }
  return out;
}

/** struct timespec at `addr` as ns, or undefined when invalid. */
function timespecNs(r: Cpu, addr: number): bigint | undefined {
  const b = guestRange(r, addr, 16, false);
  const dv = new DataView(b.buffer, b.byteOffset, 16);
  const s = dv.getBigInt64(0, true), ns = dv.getBigInt64(8, true);
  return s < 0n || ns < 0n || ns >= 1_000_000_000n ? undefined : s * 1_000_000_000n + ns;
}

/**
 * Serve `nr` if it is one of MISC_NR; undefined otherwise. `note(nr)` tells the user once that
 * the program asked for something a single process cannot do (onUnknownSyscall).
 */
export function miscCall(p: ProcessInfo, r: Cpu, nr: number, a0: number, a1: number, a2: number, a3: number, note: (nr: number) => void): number | bigint | undefined {
  const pid = a0 | 0; // a pid_t, when the call takes one first
  switch (nr) {
    case MISC_NR.getpid:
    case MISC_NR.gettid:
    case MISC_NR.getpgrp:
      return PID;
    case MISC_NR.getpgid:
    case MISC_NR.getsid:
      return pid === 0 || pid === PID ? PID : -E.ESRCH;
    case MISC_NR.setpgid:
      return (pid === 0 || pid === PID) && ((a1 | 0) === 0 || (a1 | 0) === PID) ? 0 : pid !== 0 && pid !== PID ? -E.ESRCH : -E.EPERM;
    case MISC_NR.setsid:
      return -E.EPERM; // already a process-group leader
    case MISC_NR.getppid:
    case MISC_NR.getuid:
    case MISC_NR.geteuid:
    case MISC_NR.getgid:
    case MISC_NR.getegid:
    case MISC_NR.getgroups: // root, in no supplementary group
      return 0;
    case MISC_NR.setuid:
    case MISC_NR.setgid:
      return a0 === 0 ? 0 : -E.EPERM;
    case MISC_NR.sched_yield:
    case MISC_NR.sched_setaffinity:
      return 0;
    case MISC_NR.sched_getaffinity: {
      if (a1 < 8 || a1 % 8 !== 0) return -E.EINVAL;
      if (pid !== 0 && pid !== PID) return -E.ESRCH;
      putWords(r, a2, [1]); // CPU 0 only
      return 8;
    }
    case MISC_NR.prctl:
      return prctl(p, r, a0, a1);
    case MISC_NR.socket:
    case MISC_NR.socketpair:
      return -E.EAFNOSUPPORT; // no network: every address family is unsupported
    case MISC_NR.clone: // a thread (CLONE_THREAD) or a process: neither can exist here
    case MISC_NR.fork:
    case MISC_NR.vfork:
    case MISC_NR.clone3:
      note(nr);
      return -E.ENOSYS;
    case MISC_NR.wait4:
    case MISC_NR.waitid:
      return -E.ECHILD; // no children, ever
    case MISC_NR.nanosleep:
    case MISC_NR.clock_nanosleep: {
      const req = nr === MISC_NR.nanosleep ? a0 : a2;
      const ns = timespecNs(r, req);
      if (ns === undefined) return -E.EINVAL;
      const clock = nr === MISC_NR.nanosleep ? 1 : a0;
      const abs = nr === MISC_NR.clock_nanosleep && (a1 & 1) !== 0; // TIMER_ABSTIME
      const ms = Number(abs ? ns - clockNs(clock) : ns) / 1e6;
      if (ms > 0) sleepMs(r, ms);
      return 0;
    }
    case MISC_NR.clock_gettime: {
      const ns = clockNs(a0);
      putWords(r, a1, [ns / 1_000_000_000n, ns % 1_000_000_000n]);
      return 0;
    }
    case MISC_NR.clock_getres:
      if (a1 !== 0) putWords(r, a1, [0, 1]); // 1 ns
      return 0;
    case MISC_NR.gettimeofday: {
      const ns = clockNs(0);
      if (a0 !== 0) putWords(r, a0, [ns / 1_000_000_000n, (ns % 1_000_000_000n) / 1000n]);
      return 0;
    }
    case MISC_NR.time: {
      const s = clockNs(0) / 1_000_000_000n;
      if (a0 !== 0) putWords(r, a0, [s]);
      return s;
    }
    case MISC_NR.uname: {
      const b = guestRange(r, a0, 6 * 65, true);
      b.fill(0);
      ["Linux", "ipre", "6.1.0-ipre", "#1 ipre", "x86_64", "(none)"].forEach((s, i) => b.set(encoder.encode(s), i * 65));
      return 0;
    }
    case MISC_NR.getrlimit:
      return rlimit(p.space, r, a0, a1);
    case MISC_NR.prlimit64:
      if (pid !== 0 && pid !== PID) return -E.ESRCH;
      return a3 === 0 ? 0 : rlimit(p.space, r, a1, a3);
    case MISC_NR.getrandom: {
      const buf = guestRange(r, a0, a1, true);
      for (let off = 0; off < buf.length; off += 65536) crypto.getRandomValues(buf.subarray(off, Math.min(buf.length, off + 65536)));
      return a1;
    }
    case MISC_NR.getrusage: {
      if (pid !== 0 && pid !== -1 && pid !== 1) return -E.EINVAL; // SELF, CHILDREN, THREAD
      const us = pid === -1 ? 0 : Math.floor((performance.now() - p.startMs) * 1000);
      guestRange(r, a1, 144, true).fill(0);
      putWords(r, a1, [Math.floor(us / 1e6), us % 1e6]); // ru_utime: the run so far (the guest runs in user mode)
      return 0;
    }
    case MISC_NR.times: {
      const ticks = Math.floor((performance.now() - p.startMs) / 10); // CLK_TCK 100
      if (a0 !== 0) putWords(r, a0, [ticks, 0, 0, 0]);
      return ticks;
    }
    case MISC_NR.sysinfo: {
      const b = guestRange(r, a0, 112, true);
      b.fill(0);
      const dv = new DataView(b.buffer, b.byteOffset, 112);
      dv.setBigInt64(0, BigInt(Math.floor((performance.now() - p.startMs) / 1000)), true); // uptime
      dv.setBigUint64(32, BigInt(p.space.memorySize), true); // totalram
      dv.setBigUint64(40, BigInt(p.space.memorySize), true); // freeram (an estimate: all of it)
      dv.setUint16(80, 1, true); // procs
      dv.setUint32(104, 1, true); // mem_unit
      return 0;
    }
    default:
      return undefined;
  }
}

function prctl(p: ProcessInfo, r: Cpu, option: number, arg: number): number {
  switch (option) {
    case PR.SET_NAME: {
      const b = guestRange(r, arg, 16, false);
      const nul = b.indexOf(0);
      p.comm = new Uint8Array(16);
      p.comm.set(b.subarray(0, Math.min(15, nul < 0 ? 15 : nul)));
      return 0;
    }
    case PR.GET_NAME:
      guestRange(r, arg, 16, true).set(p.comm);
      return 0;
    case PR.SET_PDEATHSIG:
      if (arg < 0 || arg > 64) return -E.EINVAL;
      p.pdeathsig = arg;
      return 0;
    case PR.GET_PDEATHSIG: {
      const b = guestRange(r, arg, 4, true);
      new DataView(b.buffer, b.byteOffset, 4).setInt32(0, p.pdeathsig, true);
      return 0;
    }
    case PR.GET_DUMPABLE:
      return p.dumpable;
    case PR.SET_DUMPABLE:
      if (arg !== 0 && arg !== 1) return -E.EINVAL;
      p.dumpable = arg;
      return 0;
    default:
      return -E.EINVAL;
  }
}

function rlimit(owner: Space, r: Cpu, resource: number, out: number): number {
  if (out === 0) return 0;
  const v = resource === RLIMIT_STACK ? BigInt(owner.stackSize) : resource === RLIMIT_NOFILE ? 1024n : RLIM_INFINITY;
  putWords(r, out, [v, v]);
  return 0;
}
