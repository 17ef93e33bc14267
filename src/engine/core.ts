/**
 * The state behind one Machine, shared by the modules that implement it (boot, service runs, the
 * exit loop, IPRE calls and connections, guest pointers). Not part of the public API: `Machine`
 * (machine.ts) is the facade, and `coreOf(machine)` is how the IPRE modules reach the state of
 * both ends of a connection (docs/ARCHITECTURE.md §2).
 */
import { MachineStateError, IpreError } from "../errors.ts";
import type { Kvm } from "../kvm/system.ts";
import type { Vm } from "../kvm/vm.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import type { ElfImage } from "../guest/elf.ts";
import { EXIT_TRAP_OFFSET, HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE, PAGE_SIZE, RETURN_TRAP_OFFSET, RT, USER_OFFSET, windowBase } from "../guest/layout.ts";
import { WindowTables } from "../x86/paging.ts";
import { GuestMemory } from "./memory.ts";
import { ENTRY, PageTableQueue } from "./parked.ts";

/** What a caller's core knows about a connected remote (installed by src/ipre/connect.ts). */
export interface RemoteLink {
  readonly remote: Core;
  readonly window: number;
  /** Allowed entry addresses. */
  readonly allow: ReadonlySet<number>;
  /** GPA of the caller's merged root (its tables + PDPT[window] := remote's entry). */
  readonly mergedRoot: number;
  /** Lends the remote's memory read-only outside calls. */
  readonly loan: boolean;
  /** Undo the connection (called when either machine closes). */
  readonly disconnect: () => void;
}

/**
 * One level of IPRE on a vCPU: a call into a remote (merged root loaded), or a callback from the
 * remote into caller code (normal root loaded: the remote is unmapped while caller code runs, so
 * caller code can reach the remote only through allowed entries).
 */
export interface IpreFrame {
  kind: "call" | "callback";
  /** The remote being called, or whose code made the callback. */
  link: RemoteLink;
  /** The real return address that the trap replaced. */
  returnAddress: number;
  /** RSP at entry (pointing at the replaced return address). */
  rsp: number;
}

/** Nesting limit of IPRE calls and callbacks on one vCPU. */
export const MAX_IPRE_DEPTH = 64;

/** Returned by a hostcall dispatcher for a gate without a JS handler. */
export const NO_HANDLER: unique symbol = Symbol("no hostcall handler");

/** Runs the JS handler of hostcall `gate` with the six argument registers (set by the facade). */
export type HostcallDispatch = (gate: number, a0: number, a1: number, a2: number, a3: number, a4: number, a5: number) => number | bigint | void | typeof NO_HANDLER;

/**
 * Runs a `syscall` (number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9 of `runner`'s vCPU)
 * made by this machine's code, possibly on a caller's vCPU inside a remote call; it sets RAX.
 * Returns false when the program ended (exit/exit_group): the call returns. Set by src/linux/.
 */
export type SyscallDispatch = (runner: Core) => boolean;

/** An extra page-table root: (PML4, PDPT, PD) pages of the runtime area's root pool. */
export interface Root {
  pml4: number;
  pdpt: number;
  pd: number;
  index: number;
}

/** The layout of Core.shared: Int32 indices, the BigInt64 index of the brk, its size. */
export const SHARED = { ATTACHED: 0, OWNER_CLOSED: 1, BRK64: 1, BYTES: 16 } as const;

export class Core {
  readonly base: number;
  readonly tables: WindowTables;
  readonly exitTrap: number;
  readonly returnTrap: number;
  /** Return address installed for callbacks from a remote into this machine's code. */
  readonly callbackTrap: number;
  readonly gateBase: number;
  /** MSR_LSTAR: syscall_entry. On PVM a ring-3 `syscall` faults fetching it (exits.ts). */
  readonly lstar: number;

  kvm: Kvm | undefined;
  vm: Vm | undefined;
  vcpu: Vcpu | undefined;
  mem: GuestMemory;
  ptq: PageTableQueue;

  closed = false;
  /** Why the vCPU must reboot before it runs again (stopped mid-guest: timeout, crash). */
  broken: string | undefined;
  /** Why the machine refuses calls until reset() (a timeout inside a remote call). */
  mustReset: string | undefined;
  /** A call is running on this vCPU. */
  inCall = false;
  /** performance.now() at which the running call times out (0: none). */
  callDeadline = 0;
  /** The running call's timeout in ms (0: none); a Linux program's sleep ends in it (src/linux/misc.ts). */
  callTimeoutMs = 0;
  /** FSBASE of this machine's code (guest TLS). */
  fsBase = 0;
  /** Where call() starts its stack (0: the top of memory); a Linux program's stays below main's frame. */
  callStackTop = 0;
  /** Exits handled by calls since creation. */
  exits = 0;
  program: ElfImage | undefined;
  print: (text: string) => void;
  hostcall: HostcallDispatch = () => NO_HANDLER;
  onRemoteEntry: ((entry: number) => void) | undefined;
  /** The Linux syscall layer of this machine's program (src/linux/), if it runs one. */
  syscall: SyscallDispatch | undefined;

  // ---- IPRE ----
  /** Root loaded when no remote call is active (the plain root, or one with loans). */
  normalRoot: number;
  /** Remote links by window index. */
  readonly links = new Map<number, RemoteLink>();
  /** Callers connected to this machine as a remote. */
  readonly callers = new Set<Core>();
  /** The caller whose remote call runs *into* this machine (serialises access to a remote). */
  busyWith: Core | undefined;
  /** On the machine whose hostcall handler runs: the core whose vCPU made the hostcall. */
  hostcallRunner: Core | undefined;
  /** IPRE calls and callbacks in progress, innermost last (objects from framePool). */
  readonly frames: IpreFrame[] = [];
  /** Preallocated frames, one per nesting level: an IPRE call or callback allocates nothing. */
  readonly framePool: IpreFrame[] = Array.from({ length: MAX_IPRE_DEPTH + 1 }, () => ({ kind: "call" as const, link: undefined as unknown as RemoteLink, returnAddress: 0, rsp: 0 }));
  /** Memslots in use besides slot 0 (one per connected remote). */
  readonly slots = new Set<number>();
  /** Root with the loaned windows, while some connection lends memory. */
  loanRoot: Root | undefined;
  /**
   * A remote shared with other threads (src/ipre/share.ts): on the owner and on each attached
   * Remote, the share's state: Int32 [attached Remotes, owner closed], then (BigInt64 index 1)
   * the break of the owner's Linux program (src/linux/memory.ts).
   */
  shared: SharedArrayBuffer | undefined;
  /** A Remote attached in this thread to memory another machine owns: it has no VM of its own. */
  attached = false;
  readonly #roots: boolean[] = new Array<boolean>(RT.ROOT_POOL_ROOTS).fill(false);

  constructor(
    readonly name: string,
    readonly window: number,
    readonly memorySize: number,
    readonly stackSize: number,
    print: (text: string) => void,
  ) {
    this.base = windowBase(window);
    this.print = print;
    this.tables = new WindowTables({ base: this.base, memory: memorySize, pml4: this.base + RT.PML4, pdpt: this.base + RT.PDPT, pd: this.base + RT.PD, ptBase: this.base + RT.PT_BASE });
    this.exitTrap = this.base + EXIT_TRAP_OFFSET;
    this.returnTrap = this.base + RETURN_TRAP_OFFSET;
    this.callbackTrap = this.returnTrap + HOSTCALL_GATE_STRIDE;
    this.gateBase = this.base + HOSTCALL_GATE_OFFSET;
    this.lstar = this.base + ENTRY.syscall;
    this.normalRoot = this.base + RT.PML4;
    this.mem = GuestMemory.none(this.base, memorySize);
    this.ptq = new PageTableQueue(this.mem);
  }

  /** Adopt guest memory (setup). */
  attach(mem: GuestMemory): void {
    this.mem = mem;
    this.ptq = new PageTableQueue(mem);
  }

  get userStart(): number {
    return this.base + USER_OFFSET;
  }
  get memoryEnd(): number {
    return this.base + this.memorySize;
  }
  get stackGuard(): number {
    return this.memoryEnd - this.stackSize - PAGE_SIZE;
  }

  /** The root the vCPU runs on now: the merged root inside a remote call, else the normal root. */
  activeRoot(): number {
    const top = this.frames[this.frames.length - 1];
    return top?.kind === "call" ? top.link.mergedRoot : this.normalRoot;
  }

  /** Whether a call into `remote` is still on the frame stack (a loop: no closure on the return path). */
  inFrames(remote: Core): boolean {
    for (let i = 0; i < this.frames.length; i++) if (this.frames[i]!.link.remote === remote) return true;
    return false;
  }

  requireVcpu(): Vcpu {
    if (this.closed || !this.vcpu) throw new MachineStateError(`${this.name} is closed`);
    return this.vcpu;
  }
  requireVm(): Vm {
    if (this.closed || !this.vm) throw new MachineStateError(`${this.name} is closed`);
    return this.vm;
  }

  /** Remotes attached to this machine's share() handle, in every thread (0 when never shared). */
  attachedRemotes(): number {
    return this.shared ? Atomics.load(new Int32Array(this.shared), SHARED.ATTACHED) : 0;
  }
  /** The break of the owner's Linux program, as the owner published it in the shared state. */
  sharedBrk(): number {
    return Number(Atomics.load(new BigInt64Array(this.shared!), SHARED.BRK64));
  }
  publishBrk(brk: number): void {
    Atomics.store(new BigInt64Array(this.shared!), SHARED.BRK64, BigInt(brk));
  }

  /** Free root-pool pages for an extra root (a merged root per remote, one for loans). */
  allocRoot(): Root {
    const index = this.#roots.indexOf(false);
    if (index < 0) throw new IpreError(`${this.name}: no free page-table root (at most ${RT.ROOT_POOL_ROOTS}: one per connected remote, plus one for loans)`);
    this.#roots[index] = true;
    const pml4 = this.base + RT.ROOT_POOL + index * 3 * PAGE_SIZE;
    return { pml4, pdpt: pml4 + PAGE_SIZE, pd: pml4 + 2 * PAGE_SIZE, index };
  }
  freeRoot(index: number): void {
    this.#roots[index] = false;
  }

  /** The lowest free memslot number above 0. */
  allocSlot(): number {
    let s = 1;
    while (this.slots.has(s)) s++;
    this.slots.add(s);
    return s;
  }
}

const cores = new WeakMap<object, Core>();

/** Register the core behind a facade (the Machine constructor). */
export function registerCore(facade: object, core: Core): void {
  cores.set(facade, core);
}

/** The core behind a Machine; a TypeError for anything else. */
export function coreOf(facade: object): Core {
  const c = cores.get(facade);
  if (c === undefined) throw new TypeError("not an ipre Machine");
  return c;
}
