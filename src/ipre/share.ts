/**
 * Sharing a remote with other threads (docs/ARCHITECTURE.md §3, "Fan-in"). `machine.share()` gives
 * a plain, structured-clonable handle; `Remote.attach(handle)` in a Worker (or any thread of the
 * same process) gives a Remote that `connect(caller, remote)` accepts. The remote's memory is not
 * copied or mapped again: a thread's caller VM gets the owner's mapping (same host address, same
 * process) as a memslot, and the remote's page tables, which live in that memory, are shared.
 *
 * Calls from callers on different threads run the remote's code at the same time, each on its own
 * vCPU: the remote must be written as a multi-threaded program (atomics, locks). Everything the
 * host touches on a call (allow-list, roots, frames, busy flag, FSBASE) belongs to the attaching
 * thread's Remote and its callers; the only shared host state is the attachment count.
 *
 * The owner refuses close(), reset() and load() while Remotes are attached: those would unmap or
 * rewrite memory that other threads' VMs are running. Detach first (`remote.detach()`, or
 * `using remote = Remote.attach(...)`).
 *
 * A Linux program (one started by Machine.create/exec) keeps its syscall layer in every thread:
 * an attached Remote gets its own LinuxProcess (AttachOptions.linux: its output sinks, by default
 * this process's stdout and stderr, and handlers), so its code may make syscalls inside calls
 * from this thread's callers. Only the owner's program grows its memory: in an attached Remote,
 * brk reports the owner's break, mmap is ENOMEM, munmap keeps pages reserved and mprotect is
 * EPERM; while Remotes are attached the owner's page permissions are frozen (src/linux/memory.ts).
 */
import { GuestMemoryError, IpreError, MachineStateError } from "../errors.ts";
import { libc } from "../ffi/index.ts";
import type { ElfImage } from "../guest/elf.ts";
import { HOSTCALL_GATE_COUNT, windowBase } from "../guest/layout.ts";
import { type Cpu, Space } from "../engine/owners.ts";
import { defaultPrint, disconnectCallers, dispatchTo, handlerTable, registerOwners } from "../engine/facade.ts";
import { GuestMemory } from "../engine/memory.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { SHARED, SharedState } from "../engine/shared.ts";
import { LinuxProcess, type LinuxOptions, type LinuxState } from "../linux/syscalls.ts";

/** The transferable description of a shared remote (send it with postMessage). */
export interface SharedRemote {
  readonly kind: "ipre.shared-remote";
  readonly version: 1;
  readonly name: string;
  readonly window: number;
  readonly memorySize: number;
  readonly stackSize: number;
  /** Host address of the owner's mapping of guest memory: valid in every thread of this process. */
  readonly hostAddress: number;
  /** The process the address belongs to. */
  readonly pid: number;
  /** FSBASE of the owner at share() time (the default thread pointer of an attached Remote). */
  readonly fsBase: number;
  /** The program's symbols and exports (segment bytes left out). */
  readonly program: ElfImage;
  /**
   * Int32Array over it: [0] attached Remotes, [1] the owner closed (1) or is open (0); then the
   * break of the owner's Linux program (BigInt64Array index 1).
   */
  readonly state: SharedArrayBuffer;
  /**
   * The owner's Linux program at share() time (its path, end, break), when it runs one; not its
   * fd table (host fds and the owner's sinks stay with the owner).
   */
  readonly linux?: Omit<LinuxState, "files">;
}

/** A hostcall handler of an attached Remote: six integer args, integer result. */
export type RemoteHostcallFn = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, remote: Remote) => number | bigint | void;

export interface AttachOptions {
  /** A name for messages (default: the owner's name + "@" + thread id). */
  name?: string;
  /** Handlers for hostcalls the remote's code makes while it runs for this thread's callers. */
  hostcalls?: Record<number, RemoteHostcallFn>;
  /** Where the remote's `ipre_print` output goes on this thread (default console.log). */
  print?: (text: string) => void;
  /**
   * FSBASE while the remote's code runs for this thread's callers (default: the owner's at
   * share()). A remote that uses TLS should give each attached thread its own block.
   */
  fsBase?: number;
  /**
   * For a Linux program: the syscall layer of this thread's Remote (output sinks, default this
   * process's stdout and stderr; handlers; trace). Its memory calls cannot grow memory (see above).
   */
  linux?: Pick<LinuxOptions<Remote>, "stdout" | "stderr" | "syscalls" | "onUnknownSyscall" | "trace">;
}

/** The owner side: the handle, and the count that guards close/reset/load. */
export function shareSpace(space: Space, linux?: LinuxState): SharedRemote {
  if (space.closed) throw new MachineStateError(`${space.name} is closed`);
  const program = space.program;
  if (!program) throw new IpreError(`${space.name} has no program loaded: load one before sharing it`);
  const state = space.shared ?? new SharedState();
  space.share(state);
  if (linux !== undefined) state.publishBrk(linux.memory.brk);
  return {
    kind: "ipre.shared-remote",
    version: 1,
    name: space.name,
    window: space.window,
    memorySize: space.memorySize,
    stackSize: space.stackSize,
    hostAddress: space.mem.hostAddr,
    pid: libc.getpid(),
    fsBase: space.fsBase,
    program: { ...program, segments: program.segments.map((s) => ({ ...s, data: new Uint8Array(0) })) },
    state: state.buffer,
    ...(linux !== undefined ? { linux: withoutFiles(linux) } : {}),
  };
}

/**
 * What a handle carries of a Linux program: not its fd table, which holds host fds and the
 * owner's output sinks (functions cannot cross to a Worker); an attached Remote has its own std
 * streams (AttachOptions.linux).
 */
function withoutFiles(linux: LinuxState): Omit<LinuxState, "files"> {
  const { files: _files, ...rest } = linux;
  return rest;
}

/** A MachineStateError when Remotes are attached to the owner (reset, load). */
export function refuseWhileAttached(space: Space, what: string): void {
  const n = space.attachedRemotes();
  if (n > 0) throw new MachineStateError(`cannot ${what} ${space.name} while ${n} Remote${n === 1 ? " is" : "s are"} attached to it (threads that called Remote.attach on its share() handle); detach them first`);
}

/**
 * The owner's close(): mark it closed first, then look for attached Remotes, so that a concurrent
 * attach() either sees the mark (and fails) or is counted here (and close is refused).
 */
export function closeShared(space: Space): void {
  if (space.shared !== undefined && !space.shared.tryClose()) refuseWhileAttached(space, "close");
}

function isShared(h: unknown): h is SharedRemote {
  return typeof h === "object" && h !== null && (h as SharedRemote).kind === "ipre.shared-remote" && (h as SharedRemote).version === 1 && (h as SharedRemote).state instanceof SharedArrayBuffer && (h as SharedRemote).state.byteLength >= SHARED.BYTES;
}

/** A remote shared by another thread (or this one): connect callers to it with `connect(caller, remote)`. */
export class Remote {
  readonly #space: Space;
  readonly hostcalls: Map<number, RemoteHostcallFn>;

  private constructor(handle: SharedRemote, state: SharedState, options: AttachOptions) {
    this.hostcalls = handlerTable(options.hostcalls);
    for (const gate of this.hostcalls.keys()) if (!(Number.isInteger(gate) && gate >= 0 && gate < HOSTCALL_GATE_COUNT - 1)) throw new RangeError(`hostcall gate ${gate} is not in 0..${HOSTCALL_GATE_COUNT - 2}`);
    const { window, memorySize, stackSize } = handle;
    const mem = GuestMemory.borrow(windowBase(window), memorySize, handle.hostAddress);
    const print = options.print ?? defaultPrint;
    const space = new Space({ name: options.name ?? `${handle.name}@${libc.gettid()}`, window, memorySize, stackSize, print, hostcall: dispatchTo(this.hostcalls, this) }, mem, true);
    space.useProgram(handle.program);
    space.setFsBase(options.fsBase ?? handle.fsBase);
    space.share(state);
    this.#space = space;
    if (handle.linux !== undefined) {
      const proc = new LinuxProcess<Remote>(space, undefined, this, handle.linux.programEnd, { ...options.linux, path: handle.linux.path });
      proc.phase = handle.linux.phase;
      space.useSyscalls(proc.dispatch);
    }
    registerOwners(this, space);
  }

  /**
   * Attach to a remote shared with `machine.share()` (usually in a Worker, with the handle it
   * received by postMessage). The owner cannot close, reset or load until this Remote detaches.
   */
  static attach(handle: SharedRemote, options: AttachOptions = {}): Remote {
    if (!isShared(handle)) throw new TypeError("Remote.attach: not a handle from machine.share()");
    if (handle.pid !== libc.getpid()) throw new IpreError(`Remote.attach: ${handle.name} was shared by process ${handle.pid}; a remote can be shared only with threads of the same process`);
    const state = new SharedState(handle.state);
    if (!state.tryAttach()) throw new MachineStateError(`Remote.attach: ${handle.name} is closed`);
    try {
      return new Remote(handle, state, options);
    } catch (e) {
      state.detach();
      throw e;
    }
  }

  get name(): string {
    return this.#space.name;
  }
  get window(): number {
    return this.#space.window;
  }
  get program(): ElfImage | undefined {
    return this.#space.program;
  }
  /** Whether detach() ran (then connect() refuses it and its connections are gone). */
  get detached(): boolean {
    return this.#space.closed;
  }
  /** FSBASE while the remote's code runs for this thread's callers. */
  get fsBase(): number {
    return this.#space.fsBase;
  }
  set fsBase(value: number) {
    if (this.#space.busyWith) throw new MachineStateError(`${this.name} is inside a call`);
    this.#space.setFsBase(value);
  }
  /** Why this Remote refuses calls (a timeout inside a call into it: the owner must reset), or undefined. */
  get needsReset(): string | undefined {
    return this.#space.mustReset;
  }

  /** Address of a symbol of the remote's program. */
  symbol(name: string): number {
    const s = this.#space.program?.symbols.get(name);
    if (!s) throw new IpreError(`${this.name}: no symbol "${name}" in the remote's program`);
    return s.value;
  }

  /** For hostcall handlers: like Machine.guestRead, with the rights of the code that made the hostcall. */
  guestRead(address: number, length: number): Uint8Array {
    return guestRange(this.#runner(), address, length, false).slice();
  }
  guestWrite(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    guestRange(this.#runner(), address, bytes.length, true).set(bytes);
  }
  guestCString(address: number, maxLength = 4096): string {
    return guestCString(this.#runner(), address, maxLength);
  }
  #runner(): Cpu {
    const r = this.#space.hostcallRunner;
    if (r === undefined) throw new GuestMemoryError(0, 0, `${this.name}: guest pointers can be followed only inside one of its hostcall handlers`);
    return r;
  }

  /** Disconnect this thread's callers from it and release the attachment. Idempotent; refused inside a call. */
  detach(): void {
    const s = this.#space;
    if (s.closed) return;
    const running = [...s.callers].find((k) => k.inCall);
    if (running) throw new MachineStateError(`cannot detach ${s.name} while ${running.name} is running a call`);
    s.close();
    const error = disconnectCallers(s);
    s.shared?.detach();
    if (error !== undefined) throw error;
  }
  [Symbol.dispose](): void {
    this.detach();
  }
}
