/**
 * The two owners of a machine's state (docs/ARCHITECTURE.md §2). A **Space** is one window of
 * guest memory and what runs in it: page tables, program, FSBASE, hostcalls, syscall layer and,
 * as a remote, its connected callers, the caller it is busy with and whether it must be reset; an
 * attached Remote (src/ipre/share.ts) is a Space only. A **Cpu** is one KVM VM with its vCPU, made
 * for a Space once its memory exists: the page-table queue, the IPRE frame stack (stack.ts), the
 * links to connected remotes and their roots, the fast path's tables (fastpath.ts), the running
 * call's deadline, and whether the vCPU must reboot. A Machine has both. Every state change is a
 * method of its owner; other files read. The two refer to each other, so they share this file.
 */
import { MachineStateError } from "../errors.ts";
import type { Kvm } from "../kvm/system.ts";
import type { Vm } from "../kvm/vm.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import type { ElfImage } from "../guest/elf.ts";
import { createVm, releaseKvm } from "./boot.ts";
import type { GuestMemory } from "./memory.ts";
import { PageTableQueue } from "./parked.ts";
import type { SharedState } from "./shared.ts";
import { type Root, RootPool, SlotPool } from "./pools.ts";
import { WindowLayout, type WindowShape } from "./window.ts";
import { type CallPath, FastTable } from "./fastpath.ts";
import { type Frame, FrameStack } from "./stack.ts";
import { type HostcallDispatch, NO_HANDLER } from "./dispatch.ts";

/** What a caller's Cpu knows about a connected remote (installed by src/ipre/connect.ts). */
export interface RemoteLink {
  readonly remote: Space;
  readonly window: number;
  /** Allowed entry addresses. */
  readonly allow: ReadonlySet<number>;
  /** GPA of the caller's merged root (its tables + PDPT[window] := remote's entry). */
  readonly mergedRoot: number;
  /** Lends the remote's memory read-only outside calls. */
  readonly loan: boolean;
  /** "fast": the runtime's #PF handler makes the outermost calls without exits (src/engine/fastpath.ts). */
  readonly path: CallPath;
  /** Undo the connection (called when either end closes). */
  readonly disconnect: () => void;
}

/** One level of IPRE on a vCPU: a call into a remote, or a callback from it (src/engine/stack.ts). */
export type IpreFrame = Frame<RemoteLink>;

/**
 * Runs a `syscall` (number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9 of `runner`'s vCPU)
 * made by this space's code, possibly on a caller's vCPU inside a remote call; it sets RAX.
 * Returns false when the program ended (exit/exit_group): the call returns. Set by src/linux/.
 */
export type SyscallDispatch = (runner: Cpu) => boolean;

export interface SpaceOptions extends WindowShape {
  readonly print: (text: string) => void;
  /** The facade's handlers (default: none; Space.useHostcalls sets them once the facade exists). */
  readonly hostcall?: HostcallDispatch;
}

/** A window of guest memory and what runs in it; as a remote, what its callers share. */
export class Space extends WindowLayout {
  #print: (text: string) => void;
  #hostcall: HostcallDispatch;
  #program: ElfImage | undefined;
  #syscall: SyscallDispatch | undefined;
  #fsBase = 0;
  #callStackTop = 0;
  #busyWith: Cpu | undefined;
  #hostcallRunner: Cpu | undefined;
  #mustReset: string | undefined;
  #closed = false;
  #shared: SharedState | undefined;
  readonly #callers = new Set<Cpu>();
  /** The Cpu that runs this space as a Machine (none for an attached Remote). */
  #runner: Cpu | undefined;

  /** `mem` must cover [windowBase(window), + memorySize); `attached`: borrowed from another thread's machine. */
  constructor(options: SpaceOptions, readonly mem: GuestMemory, readonly attached = false) {
    super(options);
    this.#print = options.print;
    this.#hostcall = options.hostcall ?? (() => NO_HANDLER);
  }

  get print(): (text: string) => void {
    return this.#print;
  }
  setPrint(fn: (text: string) => void): void {
    this.#print = fn;
  }
  get program(): ElfImage | undefined {
    return this.#program;
  }
  useProgram(program: ElfImage | undefined): void {
    this.#program = program;
  }
  /** The Linux syscall layer of this space's program (src/linux/), if it runs one. */
  get syscall(): SyscallDispatch | undefined {
    return this.#syscall;
  }
  useSyscalls(dispatch: SyscallDispatch | undefined): void {
    this.#syscall = dispatch;
  }
  /** FSBASE of this space's code (guest TLS): what an IPRE switch into it loads. */
  get fsBase(): number {
    return this.#fsBase;
  }
  setFsBase(value: number): void {
    this.#fsBase = value;
    this.#runner?.fast.setFsBase(value);
    this.#changed();
  }
  /** Where call() starts its stack (0: the top of memory); a Linux program's stays below main's frame. */
  get callStackTop(): number {
    return this.#callStackTop;
  }
  setCallStackTop(value: number): void {
    this.#callStackTop = value;
  }
  /** The caller whose remote call runs *into* this space (serialises access to a remote). */
  get busyWith(): Cpu | undefined {
    return this.#busyWith;
  }
  occupy(caller: Cpu): void {
    this.#busyWith = caller;
    this.#changed();
  }
  release(): void {
    if (this.#busyWith === undefined) return;
    this.#busyWith = undefined;
    this.#changed();
  }
  /** While one of this space's hostcall handlers or syscalls runs: the Cpu whose code made it. */
  get hostcallRunner(): Cpu | undefined {
    return this.#hostcallRunner;
  }
  /** Why this space refuses calls until reset() (a timeout inside a remote call, an exit inside a call). */
  get mustReset(): string | undefined {
    return this.#mustReset;
  }
  requireReset(why: string): void {
    this.#mustReset = why;
    this.#changed();
  }
  clearMustReset(): void {
    if (this.#mustReset === undefined) return;
    this.#mustReset = undefined;
    this.#changed();
  }
  get closed(): boolean {
    return this.#closed;
  }
  close(): void {
    this.#closed = true;
    this.#changed();
  }
  /** Free for a call: not busy, not to be reset, not closed (what the fast path's table lists). */
  get free(): boolean {
    return this.#busyWith === undefined && this.#mustReset === undefined && !this.#closed;
  }
  /** The Machine's Cpu, once (Cpu.create). */
  bindRunner(cpu: Cpu): void {
    this.#runner = cpu;
  }
  /** Whether this space can take calls changed: every caller's fast-path table follows. */
  #changed(): void {
    for (const c of this.#callers) c.remoteChanged(this);
  }
  /** On a shared owner and on each attached Remote: the share's state (src/engine/shared.ts). */
  get shared(): SharedState | undefined {
    return this.#shared;
  }
  share(state: SharedState): void {
    this.#shared = state;
  }
  /** Remotes attached to this space's share() handle, in every thread (0 when never shared). */
  attachedRemotes(): number {
    return this.#shared?.attached() ?? 0;
  }

  /** Callers connected to this space as a remote. */
  get callers(): ReadonlySet<Cpu> {
    return this.#callers;
  }
  addCaller(caller: Cpu): void {
    this.#callers.add(caller);
  }
  removeCaller(caller: Cpu): void {
    this.#callers.delete(caller);
  }

  useHostcalls(dispatch: HostcallDispatch): void {
    this.#hostcall = dispatch;
  }
  /** Hostcall `gate` of this space, made by code on `runner`: guest pointers resolve with that code's rights. */
  runHostcall(runner: Cpu, gate: number, a0: number, a1: number, a2: number, a3: number, a4: number, a5: number): ReturnType<HostcallDispatch> {
    this.#hostcallRunner = runner;
    try {
      return this.#hostcall(gate, a0, a1, a2, a3, a4, a5);
    } finally {
      this.#hostcallRunner = undefined;
    }
  }
  /** A syscall of this space's code, made on `runner` (the syscall layer must exist); false when the program ended. */
  runSyscall(runner: Cpu, dispatch: SyscallDispatch): boolean {
    this.#hostcallRunner = runner;
    try {
      return dispatch(runner);
    } finally {
      this.#hostcallRunner = undefined;
    }
  }
}

/** One KVM VM with one vCPU, running `space` (and, inside remote calls, its remotes' code). */
export class Cpu {
  /** Guest memory of `space` (the frame and the mailbox live in its runtime area). */
  readonly mem: GuestMemory;
  readonly ptq: PageTableQueue;
  readonly #links = new Map<number, RemoteLink>();
  /** Memslots and extra roots that connections take (src/ipre/connect.ts). */
  readonly slots: SlotPool = new SlotPool();
  readonly roots: RootPool;
  /** The fast path's tables and frame in this space's runtime area (src/engine/fastpath.ts). */
  readonly fast: FastTable;
  #onRemoteEntry: ((entry: number) => void) | undefined;

  /** The IPRE frame stack (src/engine/stack.ts). */
  readonly stack: FrameStack<RemoteLink>;
  #normalRoot: number;
  #loanRoot: Root | undefined;
  #broken: string | undefined;
  #inCall = false;
  #direct = false;
  #callDeadline = 0;
  #callTimeoutMs = 0;
  #exits = 0;

  private constructor(readonly space: Space, readonly kvm: Kvm, readonly vm: Vm, readonly vcpu: Vcpu) {
    this.mem = space.mem;
    this.ptq = new PageTableQueue(space.mem);
    this.#normalRoot = space.tables.root;
    this.roots = new RootPool(space.base, space.name);
    this.fast = new FastTable(space.mem, space, this.#normalRoot);
    this.fast.setFsBase(space.fsBase);
    this.stack = new FrameStack<RemoteLink>(this, space.name, (depth) => this.fast.setHostDepth(depth));
    space.bindRunner(this);
  }

  /** A VM with `space`'s memory as slot 0, and its vCPU (boot.ts); not booted yet. */
  static create(space: Space): Cpu {
    const { kvm, vm, vcpu } = createVm(space.base, space.memorySize, space.mem.hostAddr);
    return new Cpu(space, kvm, vm, vcpu);
  }
  /** Release the vCPU and the VM (the space closed). */
  release(): void {
    this.vcpu.close();
    this.vm.close();
    releaseKvm();
  }

  get name(): string {
    return this.space.name;
  }
  /** A Cpu lives as long as its space is open. */
  get closed(): boolean {
    return this.space.closed;
  }
  requireOpen(): void {
    if (this.space.closed) throw new MachineStateError(`${this.space.name} is closed`);
  }

  /** A call is running on this vCPU. */
  get inCall(): boolean {
    return this.#inCall;
  }
  /** performance.now() at which the running call times out (0: none). */
  get callDeadline(): number {
    return this.#callDeadline;
  }
  /** The running call's timeout in ms (0: none); a Linux program's sleep ends in it (src/linux/misc.ts). */
  get callTimeoutMs(): number {
    return this.#callTimeoutMs;
  }
  /** `direct`: a direct call from JS into a remote (its frame, the first, was pushed before the run). */
  beginCall(start: number, timeoutMs: number, direct: boolean): void {
    this.#callDeadline = timeoutMs > 0 ? start + timeoutMs : 0;
    this.#callTimeoutMs = timeoutMs;
    this.#inCall = true;
    this.#direct = direct;
  }
  endCall(): void {
    this.#inCall = false;
    this.#direct = false;
  }
  /**
   * Whether the only frame is a direct call's (docs/ARCHITECTURE.md §3, "Direct calls"): its
   * remote returns to the exit trap, and the return trap is none of its.
   */
  atDirectBase(): boolean {
    return this.#direct && this.stack.depth === 1;
  }
  /** Exits handled by calls since creation. */
  get exits(): number {
    return this.#exits;
  }
  countExit(): void {
    this.#exits++;
  }
  setExits(n: number): void {
    this.#exits = n;
  }

  /** Why the vCPU must reboot before it runs again (stopped mid-guest: timeout, crash). */
  get broken(): string | undefined {
    return this.#broken;
  }
  markBroken(why: string): void {
    this.#broken = why;
  }
  /**
   * A timeout stopped the vCPU mid-guest: it must reboot, and inside a remote call this space
   * and every remote on the frame stack must be reset (they stopped half-way).
   */
  markTimedOut(): void {
    this.#broken = "timeout";
    if (this.stack.depth === 0) return;
    const remotes = this.stack.remotes();
    const why = `a timeout inside a remote call from ${this.name} into ${remotes.map((r) => r.name).join(", ")}`;
    this.space.requireReset(why);
    for (const r of remotes) r.requireReset(why);
  }
  /** The vCPU was rebooted (service.ts recover): no frames, nothing broken. */
  markRecovered(): void {
    this.stack.clear();
    this.#broken = undefined;
  }

  /** Root loaded when no remote call is active (the plain root, or one with loans). */
  get normalRoot(): number {
    return this.#normalRoot;
  }
  /** Root with the loaned windows, while some connection lends memory. */
  get loanRoot(): Root | undefined {
    return this.#loanRoot;
  }
  /** The roots outside calls: `loan` (with the loaned windows) or the plain root. */
  useRoots(loan: Root | undefined): void {
    this.#loanRoot = loan;
    this.#normalRoot = loan?.pml4 ?? this.space.tables.root;
    this.fast.setNormalRoot(this.#normalRoot);
  }
  /** The root the vCPU runs on now: the merged root inside a remote call, else the normal root. */
  activeRoot(): number {
    const top = this.stack.top();
    return top?.kind === "call" ? top.link.mergedRoot : this.#normalRoot;
  }
  /** Remote links by window index. */
  get links(): ReadonlyMap<number, RemoteLink> {
    return this.#links;
  }
  link(link: RemoteLink): void {
    this.#links.set(link.window, link);
    this.#syncFast(link);
  }
  unlink(window: number): void {
    this.fast.withdraw(window);
    this.#links.delete(window);
  }
  /** `remote` (connected here or not) changed whether it can take calls, or its FSBASE. */
  remoteChanged(remote: Space): void {
    const link = this.#links.get(remote.window);
    if (link?.remote === remote) this.#syncFast(link);
  }
  /** List the link's entries in the fast path's table while its remote is free, else none. */
  #syncFast(link: RemoteLink): void {
    this.fast.withdraw(link.window);
    if (link.path === "fast" && this.#onRemoteEntry === undefined && link.remote.free) this.fast.publish(link, link.remote.fsBase);
  }
  /** Called on every IPRE entry from this vCPU (after the checks, before the remote runs). */
  get onRemoteEntry(): ((entry: number) => void) | undefined {
    return this.#onRemoteEntry;
  }
  /** While a hook is set, every call takes the host's path (the fast path has no exit to report). */
  setOnRemoteEntry(fn: ((entry: number) => void) | undefined): void {
    this.#onRemoteEntry = fn;
    for (const link of this.#links.values()) this.#syncFast(link);
  }
}
