/**
 * The Linux system-call layer of a machine that runs a static Linux program (Machine.exec):
 * enough of x86-64 Linux for static glibc (and musl) to start, allocate, print and exit.
 * (A little over 400 lines: one table of ~35 small handlers, kept together so that the whole
 * emulated ABI reads in one place.)
 *
 * One LinuxProcess per machine holds that machine's state: its brk, its mmap region, its output
 * sinks, its TLS base. A syscall is dispatched to the process of the machine whose code made it
 * (src/machine/exits.ts: inside a remote call, the remote's), and guest pointers are checked with
 * the rights of the code that runs (src/machine/pointers.ts), so a bad pointer is a
 * GuestMemoryError, never a host crash.
 *
 * Memory (brk, mmap, munmap, mremap, mprotect, madvise) is the business of the process's
 * LinuxMemory (memory.ts): the heap, the mmap area and its free list, page permissions.
 */
import { writeSync } from "node:fs";
import { LinuxProgramError, RemoteFault } from "../errors.ts";
import type { Core } from "../machine/core.ts";
import { FRAME_AT, setFsBase } from "../machine/parked.ts";
import { guestCString, guestRange } from "../machine/pointers.ts";
import { LinuxMemory, type MemoryState } from "./memory.ts";

/** A user handler: the six argument registers (signed), the machine; the result goes in RAX. */
export type SyscallFn<M = unknown> = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, machine: M) => number | bigint | void;

/** Where a program's output goes: the bytes of one write (a copy). */
export type OutputSink = (data: Uint8Array) => void;

export interface LinuxOptions<M = unknown> {
  /** argv, argv[0] included (default: ["program"]). */
  argv?: string[];
  /** The environment (default: none). */
  env?: Record<string, string>;
  /** Sinks of fd 1 and 2 (default: this process's stdout and stderr). */
  stdout?: OutputSink;
  stderr?: OutputSink;
  /** Handlers by syscall number; they replace the built-in ones. */
  syscalls?: Record<number, SyscallFn<M>>;
  /** Told once per unknown syscall number (default: console.warn); the program gets -ENOSYS. */
  onUnknownSyscall?: (nr: number, name: string) => void;
  /** Called after each syscall is handled, with its arguments and result (none for exit). */
  trace?: (nr: number, name: string, args: number[], result: number | bigint | undefined) => void;
  /**
   * The absolute path readlink("/proc/self/exe") and AT_EXECFN give (default: argv[0] when it is
   * absolute, else "/" + argv[0]: glibc asserts that the link is absolute).
   */
  path?: string;
}

/** x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
export const NR = {
  read: 0, write: 1, open: 2, close: 3, stat: 4, fstat: 5, lstat: 6, poll: 7, lseek: 8, mmap: 9, mprotect: 10,
  munmap: 11, brk: 12, rt_sigaction: 13, rt_sigprocmask: 14, ioctl: 16, pread64: 17, readv: 19, writev: 20,
  access: 21, pipe: 22, sched_yield: 24, mremap: 25, madvise: 28, dup: 32, nanosleep: 35, getpid: 39,
  socket: 41, clone: 56, fork: 57, execve: 59, exit: 60, kill: 62, uname: 63, fcntl: 72, getcwd: 79,
  readlink: 89, gettimeofday: 96, getrlimit: 97, getuid: 102, getgid: 104, geteuid: 107, getegid: 108,
  getppid: 110, sigaltstack: 131, arch_prctl: 158, gettid: 186, tkill: 200, time: 201, futex: 202,
  sched_getaffinity: 204, set_tid_address: 218, clock_gettime: 228, clock_getres: 229, clock_nanosleep: 230,
  exit_group: 231, tgkill: 234, openat: 257, newfstatat: 262, readlinkat: 267, set_robust_list: 273,
  pipe2: 293, prlimit64: 302, getrandom: 318, statx: 332, rseq: 334, clone3: 435,
} as const;
/**
 * ipre's own calls of a Linux program (guests/linux/ipre_linux.h): numbers outside Linux's range.
 * wait_for_requests ends the start-up run (Machine.create / exec returns; calls follow);
 * remote(name) gives the address of a connected remote's allowed function `name`, or 0.
 */
export const IPRE_NR = { ipre_wait_for_requests: 0x69700000, ipre_remote: 0x69700001 } as const;
const NAMES: Record<number, string> = Object.fromEntries([...Object.entries(NR), ...Object.entries(IPRE_NR)].map(([k, v]) => [v, k]));
export function syscallName(nr: number): string {
  return NAMES[nr] ?? `syscall_${nr}`;
}

/** Linux errno values the layer returns (negated in RAX). */
const E = { ENOENT: 2, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EFAULT: 14, ENODEV: 19, EINVAL: 22, ENOTTY: 25, ESPIPE: 29, ENOSYS: 38 } as const;

const MAP_ANONYMOUS = 0x20;
const AT_EMPTY_PATH = 0x1000;
const ARCH_SET_FS = 0x1002;
const ARCH_GET_FS = 0x1003;
const FUTEX_CMD_MASK = 0x7f;
const FUTEX_WAKE = 1;
const RLIMIT_STACK = 3;
const RLIMIT_NOFILE = 7;
const RLIM_INFINITY = 0xffffffffffffffffn;
const S_IFCHR = 0o020000;
const POLLIN = 1;
const POLLOUT = 4;
/** The single thread: pid = tid = 1. */
const PID = 1;

const encoder = new TextEncoder();

/** This process's stdout or stderr, synchronously (node:fs works on Node, Bun and Deno). */
function processSink(fd: 1 | 2): OutputSink {
  return (data) => {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
  };
}

/**
 * Where a program is: starting (its start-up run: C runtime, main), waiting for requests (it
 * called ipre_wait_for_requests(); the host calls its functions), or exited (main returned or it
 * called exit; its functions can still be called, on the memory exit left).
 */
export type LinuxPhase = "starting" | "waiting" | "exited";

/** What a snapshot keeps of a Linux program besides its memory (reset() and fork() restore it). */
export interface LinuxState {
  /** The heap break, the mmap area with its free list, page permissions (memory.ts). */
  readonly memory: MemoryState;
  readonly fsBase: number;
  readonly callStackTop: number;
  readonly phase: LinuxPhase;
  readonly exitCode: number | undefined;
  readonly clearChildTid: number;
  readonly path: string;
  readonly programEnd: number;
}

/** The state of one machine's Linux program and its syscall handlers. */
export class LinuxProcess<M = unknown> {
  /** The heap, the mmap area, page permissions. */
  readonly memory: LinuxMemory;
  /** Set by exit/exit_group. */
  exitCode: number | undefined;
  phase: LinuxPhase = "starting";
  clearChildTid = 0;
  readonly path: string;
  readonly stdout: OutputSink;
  readonly stderr: OutputSink;
  readonly #user: Map<number, SyscallFn<M>>;
  readonly #warned = new Set<number>();
  readonly #onUnknown: (nr: number, name: string) => void;
  readonly #trace: LinuxOptions<M>["trace"];
  /** The end of what the program wrote to stderr, for error messages (an abort's reason). */
  #stderrTail = "";
  /** Syscalls handled, by number (statistics, tests). */
  readonly counts = new Map<number, number>();

  constructor(readonly core: Core, readonly machine: M, readonly programEnd: number, options: LinuxOptions<M>) {
    this.memory = new LinuxMemory(core, programEnd);
    const argv0 = options.argv?.[0] ?? "program";
    this.path = options.path ?? (argv0.startsWith("/") ? argv0 : `/${argv0.replace(/^(\.\/)+/, "")}`);
    if (!this.path.startsWith("/")) throw new RangeError(`path must be absolute (got ${JSON.stringify(this.path)})`);
    this.stdout = options.stdout ?? processSink(1);
    const stderr = options.stderr ?? processSink(2);
    const dec = new TextDecoder();
    this.stderr = (data) => {
      this.#stderrTail = (this.#stderrTail + dec.decode(data)).slice(-1000);
      stderr(data);
    };
    this.#user = new Map(Object.entries(options.syscalls ?? {}).map(([k, v]) => [Number(k), v]));
    this.#trace = options.trace;
    this.#onUnknown = options.onUnknownSyscall ?? ((nr, name) => console.warn(`ipre: ${core.name}: unsupported Linux syscall ${name} (${nr}); the program gets -ENOSYS`));
  }

  /** What a snapshot keeps (memory aside). */
  state(): LinuxState {
    const { phase, exitCode, clearChildTid, path, programEnd } = this;
    return { memory: this.memory.state(), fsBase: this.core.fsBase, callStackTop: this.core.callStackTop, phase, exitCode, clearChildTid, path, programEnd };
  }

  /** Go back to `s` (reset to a snapshot; a fork starts from it). */
  restore(s: LinuxState): void {
    this.memory.restore(s.memory);
    this.phase = s.phase;
    this.exitCode = s.exitCode;
    this.clearChildTid = s.clearChildTid;
    this.core.fsBase = s.fsBase;
    this.core.callStackTop = s.callStackTop;
    setFsBase(this.core.mem, s.fsBase);
  }

  /** The SyscallDispatch of this machine's core: run the syscall `runner`'s vCPU made, set RAX. */
  readonly dispatch = (runner: Core): boolean => {
    const v = runner.vcpu!;
    const nr = v.regSigned("rax");
    this.counts.set(nr, (this.counts.get(nr) ?? 0) + 1);
    const a0 = v.regSigned("rdi"), a1 = v.regSigned("rsi"), a2 = v.regSigned("rdx");
    const a3 = v.regSigned("r10"), a4 = v.regSigned("r8"), a5 = v.regSigned("r9");
    const user = this.#user.get(nr);
    let result: number | bigint | void;
    if (user !== undefined) result = user(a0, a1, a2, a3, a4, a5, this.machine);
    else {
      if (nr === NR.exit || nr === NR.exit_group) {
        // exit() ran the program's atexit handlers and destructors before this syscall: its
        // state is gone, so the machine refuses calls until reset().
        if (runner !== this.core || this.phase !== "starting") this.core.mustReset = `its program called ${syscallName(nr)}(${a0 & 0xff}) inside a call (its atexit handlers and destructors have run)`;
        if (runner !== this.core) throw new LinuxProgramError(`${this.core.name}: ${syscallName(nr)}(${a0 & 0xff}) inside a remote call from ${runner.name}; a remote program cannot end the caller's run (reset it)`);
        if (this.phase !== "starting") throw new LinuxProgramError(`${this.core.name}: the program called ${syscallName(nr)}(${a0 & 0xff}) inside a call; a call ends by returning (reset the machine)`);
        this.exitCode = a0 & 0xff;
        this.#stop("exited", runner);
        this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], undefined);
        return false;
      }
      if (nr === IPRE_NR.ipre_wait_for_requests) {
        if (runner !== this.core || this.phase !== "starting") {
          throw new LinuxProgramError(`${this.core.name}: ipre_wait_for_requests() inside a call${runner !== this.core ? ` from ${runner.name}` : ""}; only the start-up run (main) may wait for requests`);
        }
        this.#stop("waiting", runner);
        this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], undefined);
        return false;
      }
      result = this.#builtin(runner, nr, a0, a1, a2, a3, a4, a5);
    }
    this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], result ?? 0);
    if (typeof result === "bigint") v.setRegBigInt("rax", result);
    else v.setReg("rax", result ?? 0);
    return true;
  };

  /**
   * The start-up run ends: calls from now on start on a stack below the current frame (past
   * the 128-byte red zone a leaf function may use), so main's frame stays intact.
   */
  #stop(phase: LinuxPhase, r: Core): void {
    this.phase = phase;
    const rsp = r.mem.getU64At(FRAME_AT.rsp);
    this.core.callStackTop = Math.floor((rsp - 128) / 16) * 16;
  }

  /** ipre_remote(name): a connected remote's allowed function `name` (the first found), or 0. */
  #remote(r: Core, namePtr: number): number {
    const name = guestCString(r, namePtr, 4096);
    for (const link of this.core.links.values()) {
      const sym = link.remote.program?.symbols.get(name);
      if (sym !== undefined && link.allow.has(sym.value)) return sym.value;
    }
    return 0;
  }

  #builtin(r: Core, nr: number, a0: number, a1: number, a2: number, a3: number, a4: number, _a5: number): number | bigint {
    switch (nr) {
      case NR.write:
        return this.#write(r, a0, [[a1, a2]]);
      case NR.writev: {
        if (a2 < 0 || a2 > 1024) return -E.EINVAL;
        const iov = guestRange(r, a1, a2 * 16, false);
        const dv = new DataView(iov.buffer, iov.byteOffset, iov.byteLength);
        const parts: [number, number][] = [];
        for (let i = 0; i < a2; i++) parts.push([Number(dv.getBigUint64(i * 16, true)), Number(dv.getBigUint64(i * 16 + 8, true))]);
        return this.#write(r, a0, parts);
      }
      case NR.read:
      case NR.readv:
        return a0 === 0 ? 0 : -E.EBADF; // stdin is at EOF
      case NR.close:
        return a0 >= 0 && a0 <= 2 ? 0 : -E.EBADF;
      case NR.lseek:
        return a0 >= 0 && a0 <= 2 ? -E.ESPIPE : -E.EBADF;
      case NR.fstat:
        return this.#stat(r, a0, a1);
      case NR.newfstatat: {
        if ((a3 & AT_EMPTY_PATH) !== 0 && guestCString(r, a1, 1) === "") return this.#stat(r, a0, a2);
        return -E.ENOENT;
      }
      case NR.open:
      case NR.openat:
        return -E.ENOENT; // no file system (Rust's std probes /proc/self/maps for the stack guard)
      case NR.ioctl:
        return a0 >= 0 && a0 <= 2 ? -E.ENOTTY : -E.EBADF; // TCGETS and the rest: not a terminal
      case NR.fcntl:
        if (a0 < 0 || a0 > 2) return -E.EBADF;
        return a1 === 3 /* F_GETFL */ ? (a0 === 0 ? 0 : 1) /* O_RDONLY : O_WRONLY */ : 0;
      case NR.poll:
        return this.#poll(r, a0, a1);
      case NR.brk:
        return this.memory.setBreak(a0);
      case NR.mmap:
        if ((a3 & MAP_ANONYMOUS) === 0) return a4 >= 0 && a4 <= 2 ? -E.ENODEV : -E.EBADF;
        return this.memory.mmap(a0, a1, a2, a3);
      case NR.munmap:
        return this.memory.munmap(a0, a1);
      case NR.mremap:
        return this.memory.mremap(a0, a1, a2, a3);
      case NR.mprotect:
        return this.memory.mprotect(a0, a1, a2);
      case NR.madvise:
        return this.memory.madvise(a0, a1, a2);
      case NR.arch_prctl:
        if (a0 === ARCH_SET_FS) {
          this.core.fsBase = a1; // what an IPRE switch into this machine's code loads
          setFsBase(r.mem, a1); // the runtime loads it on this resume
          return 0;
        }
        if (a0 === ARCH_GET_FS) return this.#putU64(r, a1, BigInt(this.core.fsBase));
        return -E.EINVAL;
      case NR.set_tid_address:
        this.clearChildTid = a0;
        return PID;
      case NR.set_robust_list:
      case NR.sched_yield:
        return 0;
      case NR.rseq:
        return -E.ENOSYS; // what glibc expects without rseq (no warning)
      case NR.getrlimit:
        return this.#rlimit(r, a0, a1);
      case NR.prlimit64:
        return a3 === 0 ? 0 : this.#rlimit(r, a1, a3);
      case NR.getrandom: {
        const buf = guestRange(r, a0, a1, true);
        for (let off = 0; off < buf.length; off += 65536) crypto.getRandomValues(buf.subarray(off, Math.min(buf.length, off + 65536)));
        return a1;
      }
      case NR.clock_gettime: {
        const ns = clockNs(a0);
        const b = guestRange(r, a1, 16, true);
        const dv = new DataView(b.buffer, b.byteOffset, 16);
        dv.setBigInt64(0, ns / 1_000_000_000n, true);
        dv.setBigInt64(8, ns % 1_000_000_000n, true);
        return 0;
      }
      case NR.clock_getres:
        if (a1 !== 0) {
          const b = guestRange(r, a1, 16, true);
          b.fill(0);
          b[8] = 1; // 1 ns
        }
        return 0;
      case NR.gettimeofday: {
        if (a0 !== 0) {
          const ns = clockNs(0);
          const b = guestRange(r, a0, 16, true);
          const dv = new DataView(b.buffer, b.byteOffset, 16);
          dv.setBigInt64(0, ns / 1_000_000_000n, true);
          dv.setBigInt64(8, (ns % 1_000_000_000n) / 1000n, true);
        }
        return 0;
      }
      case NR.time: {
        const s = clockNs(0) / 1_000_000_000n;
        if (a0 !== 0) this.#putU64(r, a0, s);
        return s;
      }
      case NR.uname: {
        const b = guestRange(r, a0, 6 * 65, true);
        b.fill(0);
        ["Linux", "ipre", "6.1.0-ipre", "#1 ipre", "x86_64", "(none)"].forEach((s, i) => b.set(encoder.encode(s), i * 65));
        return 0;
      }
      case NR.readlink:
        return this.#readlink(r, a0, a1, a2);
      case NR.readlinkat:
        return this.#readlink(r, a1, a2, a3);
      case NR.getpid:
      case NR.gettid:
        return PID;
      case NR.getppid:
      case NR.getuid:
      case NR.geteuid:
      case NR.getgid:
      case NR.getegid:
        return 0;
      case NR.tgkill:
      case NR.tkill:
      case NR.kill: {
        const sig = nr === NR.tgkill ? a2 : a1;
        if (sig === 0) return 0;
        throw this.#fatalSignal(r, nr, sig);
      }
      case IPRE_NR.ipre_remote:
        return this.#remote(r, a0);
      case NR.rt_sigaction:
        if (a2 !== 0) guestRange(r, a2, 32, true).fill(0); // the old action: SIG_DFL
        return 0;
      case NR.rt_sigprocmask:
        if (a2 !== 0) guestRange(r, a2, 8, true).fill(0); // the old mask: empty
        return 0;
      case NR.sigaltstack:
        if (a1 !== 0) {
          const b = guestRange(r, a1, 24, true);
          b.fill(0);
          b[8] = 2; // SS_DISABLE
        }
        return 0;
      case NR.futex: {
        // One thread: nobody to wake, and waiting would never end.
        if ((a1 & FUTEX_CMD_MASK) === FUTEX_WAKE) return 0;
        return -E.EAGAIN;
      }
      default:
        if (!this.#warned.has(nr)) {
          this.#warned.add(nr);
          this.#onUnknown(nr, syscallName(nr));
        }
        return -E.ENOSYS;
    }
  }

  /**
   * The program sent itself a fatal signal (abort(): an uncaught C++ exception, a Rust panic
   * that reached an extern "C" boundary). Inside a remote call that is a RemoteFault of the
   * remote, which must then be reset (it stopped half-way); else a LinuxProgramError (and inside
 * a call, too, the machine must be reset).
   */
  #fatalSignal(r: Core, nr: number, sig: number): Error {
    const what = `signal ${sig}${sig === 6 ? " (SIGABRT: abort())" : ""}`;
    const output = this.#stderrTail;
    const said = output ? `; its last stderr output: ${JSON.stringify(output)}` : "";
    if (r !== this.core) {
      const rip = r.mem.getI64At(FRAME_AT.rip) - 2; // the `syscall` instruction
      this.core.mustReset = `it ended a call from ${r.name} with ${what}`;
      const info = { vector: -1, rip, cr2: 0, errorCode: 0, rsp: r.mem.getU64At(FRAME_AT.rsp) };
      return new RemoteFault(info, this.core.name, { signal: sig, output, message: `remote ${this.core.name} sent itself ${what} through ${syscallName(nr)} during a call from ${r.name}${said}` });
    }
    // Inside a call the program stopped half-way (in a start-up run there is nothing to keep).
    if (this.phase !== "starting") this.core.mustReset = `its program ended a call with ${what}`;
    return new LinuxProgramError(`${this.core.name}: the program sent itself ${what} through ${syscallName(nr)}${said}`, sig);
  }

  #write(r: Core, fd: number, parts: [number, number][]): number {
    const sink = fd === 1 ? this.stdout : fd === 2 ? this.stderr : undefined;
    if (sink === undefined) return -E.EBADF;
    let n = 0;
    for (const [addr, len] of parts) {
      if (len < 0) return -E.EINVAL;
      if (len === 0) continue;
      sink(guestRange(r, addr, len, false).slice());
      n += len;
    }
    return n;
  }

  /** struct stat of a character device (a pty-like std stream), 144 bytes. */
  #stat(r: Core, fd: number, buf: number): number {
    if (fd < 0 || fd > 2) return -E.EBADF;
    const b = guestRange(r, buf, 144, true);
    b.fill(0);
    const dv = new DataView(b.buffer, b.byteOffset, 144);
    dv.setBigUint64(0, 0x16n, true); // st_dev
    dv.setBigUint64(8, BigInt(fd + 3), true); // st_ino
    dv.setBigUint64(16, 1n, true); // st_nlink
    dv.setUint32(24, S_IFCHR | 0o620, true); // st_mode
    dv.setBigUint64(40, 0x8800n, true); // st_rdev: makedev(136, 0)
    dv.setBigInt64(56, 1024n, true); // st_blksize
    return 0;
  }

  #poll(r: Core, fds: number, nfds: number): number {
    if (nfds < 0 || nfds > 64) return -E.EINVAL;
    const b = guestRange(r, fds, nfds * 8, true);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let ready = 0;
    for (let i = 0; i < nfds; i++) {
      const fd = dv.getInt32(i * 8, true);
      const events = dv.getInt16(i * 8 + 4, true);
      const revents = fd === 0 ? events & POLLIN : fd === 1 || fd === 2 ? events & POLLOUT : fd < 0 ? 0 : 0x20; /* POLLNVAL */
      dv.setInt16(i * 8 + 6, revents, true);
      if (revents !== 0) ready++;
    }
    return ready;
  }

  #rlimit(r: Core, resource: number, out: number): number {
    if (out === 0) return 0;
    const b = guestRange(r, out, 16, true);
    const dv = new DataView(b.buffer, b.byteOffset, 16);
    const v = resource === RLIMIT_STACK ? BigInt(this.core.stackSize) : resource === RLIMIT_NOFILE ? 1024n : RLIM_INFINITY;
    dv.setBigUint64(0, v, true);
    dv.setBigUint64(8, v, true);
    return 0;
  }

  #readlink(r: Core, path: number, buf: number, size: number): number {
    if (guestCString(r, path, 4096) !== "/proc/self/exe") return -E.ENOENT;
    if (size <= 0) return -E.EINVAL;
    const bytes = encoder.encode(this.path).subarray(0, size);
    guestRange(r, buf, bytes.length, true).set(bytes);
    return bytes.length;
  }

  #putU64(r: Core, addr: number, v: bigint): number {
    const b = guestRange(r, addr, 8, true);
    new DataView(b.buffer, b.byteOffset, 8).setBigUint64(0, BigInt.asUintN(64, v), true);
    return 0;
  }
}

/** Nanoseconds of a clock: CLOCK_REALTIME (0) and its coarse/TAI variants from the epoch, the rest monotonic. */
function clockNs(clock: number): bigint {
  if (clock === 0 || clock === 5 || clock === 11) return BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor((performance.now() % 1) * 1e6));
  return BigInt(Math.floor(performance.now() * 1e6));
}
