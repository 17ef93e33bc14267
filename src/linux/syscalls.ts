/**
 * The Linux system-call layer of a machine that runs a static Linux program (Machine.exec):
 * enough of x86-64 Linux for static glibc, musl and busybox to start, allocate, read input and
 * allowed files, print and exit. Here: the process (memory, signals, TLS, exit, execve of
 * itself); files.ts (paths), io.ts (fds, pipes, poll) over fds.ts and vfs.ts, misc.ts (time,
 * identity, limits, the single-process answers) serve the rest. *
 * One LinuxProcess per machine holds that machine's state: its brk, its mmap region, its output
 * sinks, its TLS base. A syscall is dispatched to the process of the machine whose code made it
 * (src/engine/exits.ts: inside a remote call, the remote's), and guest pointers are checked with
 * the rights of the code that runs (src/engine/pointers.ts), so a bad pointer is a
 * GuestMemoryError, never a host crash.
 *
 * Memory (brk, mmap, munmap, mremap, mprotect, madvise) is the business of the process's
 * LinuxMemory (memory.ts): the heap, the mmap area and its free list, page permissions.
 */
import { LinuxProgramError, RemoteFault } from "../errors.ts";
import type { Cpu, Space } from "../engine/owners.ts";
import { FRAME_AT, loadFsBase } from "../engine/parked.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { LinuxMemory, type MemoryState } from "./memory.ts";
import { E } from "./abi.ts";
import type { IoCtx } from "./fds.ts";
import { FILE_NR, LinuxFiles, type FilesState } from "./files.ts";
import { IO_NR, ioCall } from "./io.ts";
import { guestStrings, MISC_NR, miscCall, PID, ProcessInfo, sleepMs } from "./misc.ts";
import { normalize } from "./vfs.ts";
import { processSink, type LinuxOptions, type OutputSink, type SyscallFn } from "./options.ts";

export type { LinuxOptions, OutputSink, SyscallFn } from "./options.ts";

/** x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
export const NR = {
  ...FILE_NR, ...IO_NR, ...MISC_NR,
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

const MAP_ANONYMOUS = 0x20;
const ARCH_SET_FS = 0x1002;
const ARCH_GET_FS = 0x1003;
const FUTEX_CMD_MASK = 0x7f;
const FUTEX_WAKE = 1;


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
  /** The fd table (a copy), cwd and umask. */
  readonly files: FilesState;
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
  /** The fd table, the file namespace, cwd and umask (files.ts). */
  readonly files: LinuxFiles;
  /** Name, start time and flags of prctl and friends (misc.ts). */
  readonly info: ProcessInfo;
  /** Set by execve of the program itself: runLinux starts it again with these (loader.ts). */
  execRequest: { argv: string[]; env: string[] } | undefined;
  readonly #user: Map<number, SyscallFn<M>>;
  readonly #warned: Set<number>;
  readonly #onUnknown: (nr: number, name: string) => void;
  readonly #trace: LinuxOptions<M>["trace"];
  /** The end of what the program wrote to stderr, for error messages (an abort's reason). */
  #stderrTail = "";
  /** Syscalls handled, by number (statistics, tests). */
  readonly counts = new Map<number, number>();

  /** `inherit`: the process this one replaces by an execve (its files and warnings go on). */
  /**
   * `space`: where the program runs; `cpu`: its own vCPU (a machine's; none in an attached
   * Remote, whose code runs only on callers' vCPUs).
   */
  constructor(readonly space: Space, readonly cpu: Cpu | undefined, readonly machine: M, readonly programEnd: number, options: LinuxOptions<M>, inherit?: LinuxProcess<M>) {
    this.memory = new LinuxMemory(space, cpu, programEnd);
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
    this.#onUnknown = options.onUnknownSyscall ?? ((nr, name) => console.warn(`ipre: ${space.name}: unsupported Linux syscall ${name} (${nr}); the program gets -ENOSYS`));
    this.#warned = inherit === undefined ? new Set() : inherit.#warned;
    this.files = inherit?.files ?? new LinuxFiles(options.files, options.stdin, this.stdout, this.stderr, this.path);
    this.info = new ProcessInfo(space, this.path);
  }

  /** Close the host files the program has open (the machine drops the process). */
  close(): void {
    this.files.table.closeAll();
  }

  /** What a snapshot keeps (memory aside). */
  state(): LinuxState {
    const { phase, exitCode, clearChildTid, path, programEnd } = this;
    return { memory: this.memory.state(), fsBase: this.space.fsBase, callStackTop: this.space.callStackTop, phase, exitCode, clearChildTid, path, programEnd, files: this.files.state() };
  }

  /** Go back to `s` (reset to a snapshot; a fork starts from it). */
  restore(s: LinuxState): void {
    this.memory.restore(s.memory);
    this.phase = s.phase;
    this.exitCode = s.exitCode;
    this.clearChildTid = s.clearChildTid;
    this.space.setFsBase(s.fsBase);
    this.space.setCallStackTop(s.callStackTop);
    loadFsBase(this.space.mem, s.fsBase);
    this.files.restore(s.files);
    this.#stderrTail = ""; // an error after this names only what the program wrote since
  }

  /** The SyscallDispatch of this program's space: run the syscall `runner`'s vCPU made, set RAX. */
  readonly dispatch = (runner: Cpu): boolean => {
    const v = runner.vcpu;
    const own = runner.space === this.space; // else a remote call into this program
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
        if (!own || this.phase !== "starting") this.space.requireReset(`its program called ${syscallName(nr)}(${a0 & 0xff}) inside a call (its atexit handlers and destructors have run)`);
        if (!own) throw new LinuxProgramError(`${this.space.name}: ${syscallName(nr)}(${a0 & 0xff}) inside a remote call from ${runner.name}; a remote program cannot end the caller's run (reset it)`);
        if (this.phase !== "starting") throw new LinuxProgramError(`${this.space.name}: the program called ${syscallName(nr)}(${a0 & 0xff}) inside a call; a call ends by returning (reset the machine)`);
        this.exitCode = a0 & 0xff;
        this.#stop("exited", runner);
        this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], undefined);
        return false;
      }
      if (nr === IPRE_NR.ipre_wait_for_requests) {
        if (!own || this.phase !== "starting") {
          throw new LinuxProgramError(`${this.space.name}: ipre_wait_for_requests() inside a call${!own ? ` from ${runner.name}` : ""}; only the start-up run (main) may wait for requests`);
        }
        this.#stop("waiting", runner);
        this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], undefined);
        return false;
      }
      if (nr === NR.execve) {
        result = this.#execve(runner, a0, a1, a2);
        if (result === 0) {
          this.#trace?.(nr, syscallName(nr), [a0, a1, a2, a3, a4, a5], 0);
          return false; // runLinux starts the program again
        }
      } else result = this.#builtin(runner, nr, a0, a1, a2, a3, a4, a5);
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
  #stop(phase: LinuxPhase, r: Cpu): void {
    this.phase = phase;
    const rsp = r.mem.getU64At(FRAME_AT.rsp);
    this.space.setCallStackTop(Math.floor((rsp - 128) / 16) * 16);
  }

  /** ipre_remote(name): a connected remote's allowed function `name` (the first found), or 0. */
  #remote(r: Cpu, namePtr: number): number {
    const name = guestCString(r, namePtr, 4096);
    for (const link of this.cpu?.links.values() ?? []) {
      const sym = link.remote.program?.symbols.get(name);
      if (sym !== undefined && link.allow.has(sym.value)) return sym.value;
    }
    return 0;
  }

  #builtin(r: Cpu, nr: number, a0: number, a1: number, a2: number, a3: number, a4: number, _a5: number): number | bigint {
    switch (nr) {
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
          this.space.setFsBase(a1); // what an IPRE switch into this program's code loads
          loadFsBase(r.mem, a1); // the runtime loads it on this resume
          return 0;
        }
        if (a0 === ARCH_GET_FS) return this.#putU64(r, a1, BigInt(this.space.fsBase));
        return -E.EINVAL;
      case NR.set_tid_address:
        this.clearChildTid = a0;
        return PID;
      case NR.set_robust_list:
        return 0;
      case NR.rseq:
        return -E.ENOSYS; // what glibc expects without rseq (no warning)
      case NR.tgkill:
      case NR.tkill:
      case NR.kill: {
        const sig = nr === NR.tgkill ? a2 : a1;
        if (nr === NR.kill && (a0 | 0) !== PID && (a0 | 0) !== 0 && (a0 | 0) !== -1) return -E.ESRCH;
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
      default: {
        this.#io.runner = r;
        const result = this.files.call(r, nr, a0, a1, a2, a3, a4) ?? ioCall(this.files, r, this.#io, nr, a0, a1, a2, a3, a4) ?? miscCall(this.info, r, nr, a0, a1, a2, a3, this.#note);
        if (result !== undefined) return result;
        this.#note(nr);
        return -E.ENOSYS;
      }
    }
  }

  /** Tell the user once per syscall number that the program asked for something unsupported. */
  readonly #note = (nr: number): void => {
    if (this.#warned.has(nr)) return;
    this.#warned.add(nr);
    this.#onUnknown(nr, syscallName(nr));
  };

  /** What a read or write that may wait needs: sleeping within the call's deadline, the deadlock error. */
  readonly #io: IoCtx & { runner: Cpu | undefined } = {
    runner: undefined,
    wait: (ms) => {
      if (this.#io.runner !== undefined) sleepMs(this.#io.runner, ms);
    },
    deadlock: (what) => {
      if (this.phase !== "starting") this.space.requireReset(`its program would wait forever inside a call (${what})`);
      return new LinuxProgramError(`${this.space.name}: the program would wait forever: ${what} (one process, one thread: nothing else can)`);
    },
  };

  /**
   * execve: only of the program itself ("/proc/self/exe" or its own path, as busybox runs its
   * applets), in the start-up run. 0 when runLinux should start it again with the new argv and
   * environment (the fd table goes on, close-on-exec fds closed); else the program's error.
   */
  #execve(r: Cpu, pathPtr: number, argvPtr: number, envPtr: number): number {
    const path = normalize(this.files.cwd, guestCString(r, pathPtr, 4096));
    if (path !== "/proc/self/exe" && path !== this.path) {
      const node = this.files.vfs.resolve(path, true);
      if (typeof node === "number") return node;
      if (node.kind === "host" && node.missing) return -E.ENOENT;
      this.#note(NR.execve); // another program: one process runs one program here
      return -E.ENOSYS;
    }
    if (r.space !== this.space || this.phase !== "starting") {
      this.#note(NR.execve);
      return -E.ENOSYS;
    }
    this.execRequest = { argv: guestStrings(r, argvPtr), env: guestStrings(r, envPtr) };
    for (const [fd, slot] of [...this.files.table.slots]) if (slot.cloexec) this.files.table.close(fd);
    return 0;
  }

  /**
   * The program sent itself a fatal signal (abort(): an uncaught C++ exception, a Rust panic
   * that reached an extern "C" boundary). Inside a remote call that is a RemoteFault of the
   * remote, which must then be reset (it stopped half-way); else a LinuxProgramError (and inside
   * a call, too, the machine must be reset).
   */
  #fatalSignal(r: Cpu, nr: number, sig: number): Error {
    const what = `signal ${sig}${sig === 6 ? " (SIGABRT: abort())" : ""}`;
    const output = this.#stderrTail;
    const said = output ? `; its last stderr output: ${JSON.stringify(output)}` : "";
    if (r.space !== this.space) {
      const rip = r.mem.getI64At(FRAME_AT.rip) - 2; // the `syscall` instruction
      this.space.requireReset(`it ended a call from ${r.name} with ${what}`);
      const info = { vector: -1, rip, cr2: 0, errorCode: 0, rsp: r.mem.getU64At(FRAME_AT.rsp) };
      return new RemoteFault(info, this.space.name, { signal: sig, output, message: `remote ${this.space.name} sent itself ${what} through ${syscallName(nr)} during a call from ${r.name}${said}` });
    }
    // Inside a call the program stopped half-way (in a start-up run there is nothing to keep).
    if (this.phase !== "starting") this.space.requireReset(`its program ended a call with ${what}`);
    return new LinuxProgramError(`${this.space.name}: the program sent itself ${what} through ${syscallName(nr)}${said}`, sig);
  }

  #putU64(r: Cpu, addr: number, v: bigint): number {
    const b = guestRange(r, addr, 8, true);
    new DataView(b.buffer, b.byteOffset, 8).setBigUint64(0, BigInt.asUintN(64, v), true);
    return 0;
  }
}
