/**
 * A Machine: one KVM VM with one vCPU, its guest memory (a memfd), the ring-0 runtime, page
 * tables, a loaded program, and the calls that run it. This file is the public facade over the
 * machine's two owners of state, its Space and its Cpu (src/engine/owners.ts), and the modules
 * that do the work (docs/ARCHITECTURE.md §2):
 *
 *   layout.ts     the read-only part of the facade (name, window, layout), its base class
 *   lifecycle.ts  boot, load, Linux start, snapshot, reset, close (owns snapshots and the Linux process)
 *   access.ts     the host's view of memory, and guest pointers inside hostcall handlers
 *   ../engine/    the exit protocol: a call's exit loop (exits.ts) and everything it reaches
 *   ../ipre/      connections (connect.ts) and sharing with other threads (share.ts)
 *   ../linux/     the syscall layer of static Linux programs
 *
 * One short delegating member each, so that a reader finds every operation a user can do here.
 *
 * Life of a vCPU: it boots once into the runtime and from then on is always *parked* in a ring-0
 * stub right after an `out` (§4). A call writes an iret frame and the argument registers and
 * resumes; the guest runs in ring 3 until it faults into a stub.
 */
import { IpreError } from "../errors.ts";
import { flatImage, parseElf, type ElfImage } from "../guest/elf.ts";
import { ELF_LINK_OFFSET, windowBase } from "../guest/layout.ts";
import type { PagePerm } from "../x86/paging.ts";
import { Cpu, Space } from "../engine/owners.ts";
import { callPathDefault, type CallPath } from "../engine/fastpath.ts";
import { dispatchTo, handlerTable, registerOwners } from "../engine/facade.ts";
import { GuestMemory } from "../engine/memory.ts";
import { flushPageTables, serviceLimit, serviceRun } from "../engine/service.ts";
import { loadFsBase } from "../engine/parked.ts";
import { runCall } from "../engine/exits.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { shareSpace, type SharedRemote } from "../ipre/share.ts";
import { isLinuxProgram } from "../linux/loader.ts";
import type { LinuxOptions, LinuxPhase, LinuxProcess } from "../linux/syscalls.ts";
import { compile } from "../guest/compile.ts";
import { bootCpu, Lifecycle } from "./lifecycle.ts";
import { hostCString, hostView, rightsOf } from "./access.ts";
import { checkCall, prepareCall, requireUsable, type CallArg } from "../engine/calls.ts";
import { sourceName, spaceOptions, type CallOptions, type MachineOptionsOf } from "./options.ts";
import type { Snapshot } from "./snapshot.ts";
import { MachineLayout } from "./layout.ts";

export { HOSTCALL_PRINT } from "../guest/layout.ts";
export { kvmInfo, type KvmInfo } from "../engine/boot.ts";
export { Snapshot } from "./snapshot.ts";

/** A JS function the guest can call through a hostcall gate: six integer args, integer result. */
export type HostcallFn = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, machine: Machine) => number | bigint | void;

/** The options of {@link Machine.create} (options.ts). */
export type MachineOptions = MachineOptionsOf<Machine>;
export type { CallArg } from "../engine/calls.ts";
export type { CallOptions } from "./options.ts";

/** Options of {@link Machine.exec}: argv, env, output sinks, syscall handlers (src/linux/syscalls.ts). */
export type ExecOptions = LinuxOptions<Machine> & CallOptions;

const encoder = new TextEncoder();

export class Machine extends MachineLayout {
  readonly #s: Space;
  readonly #c: Cpu;
  readonly #life: Lifecycle<Machine>;
  readonly hostcalls: Map<number, HostcallFn>;
  /** Default timeout of calls in ms (0: none). */
  timeoutMs: number;

  /** What exec() returns when the program called ipre_wait_for_requests() instead of exiting. */
  static readonly WAITING = -1;

  /** `memory`: guest memory for the validated window and size (fresh, or a snapshot's copy). */
  private constructor(options: MachineOptions, memory: (base: number, size: number, name: string) => GuestMemory) {
    const hostcalls = handlerTable<Machine>(options.hostcalls);
    const o = spaceOptions(options);
    const space = new Space(o, memory(windowBase(o.window), o.memorySize, o.name));
    let cpu: Cpu;
    try {
      cpu = Cpu.create(space);
    } catch (e) {
      space.mem.close();
      throw e;
    }
    super(space);
    this.hostcalls = hostcalls;
    space.useHostcalls(dispatchTo(hostcalls, this));
    this.#s = space;
    this.#c = cpu;
    this.#life = new Lifecycle<Machine>(cpu, this);
    registerOwners(this, space, cpu);
    this.timeoutMs = options.timeoutMs ?? 0;
  }

  /** Create a VM, its memory and vCPU, boot the runtime, and optionally load a program. */
  static create(options: MachineOptions = {}): Machine {
    if (options.source !== undefined) {
      if (options.program !== undefined) throw new RangeError("Machine.create: give a program or a source, not both");
      // Compiled before any VM exists: a CompileError leaves nothing to close.
      options = { ...options, program: compile(options.source, { window: options.window ?? 0, linkAgainst: options.linkAgainst, name: sourceName(options.name) }) };
    } else if (options.linkAgainst !== undefined) throw new RangeError("Machine.create: linkAgainst needs a source");
    const m = new Machine(options, (base, size, name) => GuestMemory.create(base, size, name));
    try {
      bootCpu(m.#c, true);
      if (options.program) {
        const linux = options.linux === false ? undefined : options.linux === true ? {} : options.linux;
        if (linux !== undefined || (options.linux === undefined && isLinuxProgram(parseElf(options.program, { linux: true })))) {
          m.#life.start(options.program, linux ?? {}, m.timeoutMs);
        } else m.load(options.program);
      }
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /**
   * A new VM whose memory is a copy-on-write view of `snapshot` (same window, program and page
   * tables); it boots in microseconds-to-milliseconds and resets to the snapshot.
   */
  static fork(snapshot: Snapshot, options: Pick<MachineOptions, "hostcalls" | "print" | "name" | "timeoutMs"> & { linux?: LinuxOptions<Machine> } = {}): Machine {
    const fd = snapshot.fd;
    const m = new Machine({ ...options, window: snapshot.window, memory: snapshot.memorySize, stackSize: snapshot.stackSize, name: options.name ?? `fork of ${snapshot.source}` }, (base, size) => GuestMemory.fromSnapshot(base, size, fd));
    try {
      bootCpu(m.#c, false);
      m.#life.forkedFrom(snapshot, options.linux);
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /**
   * Upper bound in ms of a boot or service run (ring-0 runtime code only, normally a few µs;
   * 0 = none). Exceeding it means a bug in the runtime or a corrupted runtime area.
   */
  static get serviceRunLimitMs(): number {
    return serviceLimit.ms;
  }
  static set serviceRunLimitMs(ms: number) {
    serviceLimit.ms = ms;
  }
  /**
   * The path of IPRE connections whose `connect()` options choose none (ConnectOptions.path):
   * "fast" (the default: caller code's outermost calls make no exit) or "trap" (every call exits
   * twice). Process-wide, for connections made afterwards.
   */
  static get callPath(): CallPath {
    return callPathDefault.value;
  }
  static set callPath(path: CallPath) {
    if (path !== "fast" && path !== "trap") throw new IpreError(`callPath must be "fast" or "trap"`);
    callPathDefault.value = path;
  }

  // ---- what changes (the rest of its identity and layout: layout.ts) ----

  /** Where `ipre_print` output goes. */
  get print(): (text: string) => void {
    return this.#s.print;
  }
  set print(fn: (text: string) => void) {
    this.#s.setPrint(fn);
  }
  /** Statistics: exits handled by calls since creation. */
  get exits(): number {
    return this.#c.exits;
  }
  set exits(n: number) {
    this.#c.setExits(n);
  }
  /** Called on every IPRE entry (after the checks, before the remote runs); for tracing and benchmarks. */
  get onRemoteEntry(): ((entry: number) => void) | undefined {
    return this.#c.onRemoteEntry;
  }
  set onRemoteEntry(fn: ((entry: number) => void) | undefined) {
    this.#c.setOnRemoteEntry(fn);
  }
  /** Change user page permissions (null unmaps), applied through the runtime. */
  protect(address: number, length: number, perm: PagePerm | null): void {
    this.#s.tables.setPages(this.#c.ptq.pt, address, length, perm);
    flushPageTables(this.#c);
  }

  // ---- memory: the host's own access, and guest pointers (access.ts) ----

  /**
   * A zero-copy view of guest user memory [address, address+length); throws GuestMemoryError when
   * out of range. Inside one of this machine's hostcall handlers, the address is a guest pointer:
   * it is resolved with the rights of the code that made the hostcall (see {@link guestRead}), and
   * may designate a connected remote's memory where that code may read it.
   */
  bytes(address: number, length: number): Uint8Array {
    return GuestMemory.lend(hostView(this.#c, address, length, false));
  }
  read(address: number, length: number): Uint8Array {
    return this.bytes(address, length).slice();
  }
  /** Copy into guest memory; inside a hostcall handler the pages must be writable by the code that made it. */
  write(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    hostView(this.#c, address, bytes.length, true).set(bytes);
  }
  readU64(address: number): bigint {
    const b = hostView(this.#c, address, 8, false);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  writeU64(address: number, value: bigint | number): void {
    const b = hostView(this.#c, address, 8, true);
    new DataView(b.buffer, b.byteOffset, 8).setBigUint64(0, BigInt.asUintN(64, BigInt(value)), true);
  }
  readI64(address: number): number {
    return Number(BigInt.asIntN(64, this.readU64(address)));
  }
  /** A NUL-terminated string (at most maxLength bytes). */
  readCString(address: number, maxLength = 4096): string {
    return hostCString(this.#c, address, maxLength);
  }
  /** Guest memory of the whole window, runtime area included (host-side tooling and tests). */
  rawMemory(): Uint8Array {
    return GuestMemory.lend(this.#s.mem.u8);
  }

  /**
   * For hostcall handlers: a copy of the bytes a guest pointer designates, read with the rights of
   * the guest code that made the hostcall (the page tables it runs on: its own window; a remote's
   * only while that remote's code runs inside a call; a loaned window read-only). Outside a
   * hostcall: with the rights of this machine's code outside calls. GuestMemoryError otherwise.
   * (`bytes()`/`read()` are the host's own unchecked access to this machine's user memory.)
   */
  guestRead(address: number, length: number): Uint8Array {
    return guestRange(rightsOf(this.#c), address, length, false).slice();
  }
  /** Like {@link guestRead}, for writing: the pages must be writable by that code. */
  guestWrite(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    guestRange(rightsOf(this.#c), address, bytes.length, true).set(bytes);
  }
  /** Like {@link guestRead}, for a NUL-terminated string of at most maxLength bytes. */
  guestCString(address: number, maxLength = 4096): string {
    return guestCString(rightsOf(this.#c), address, maxLength);
  }

  // ---- programs ----

  /** Load a static ELF64 executable linked for this machine's window. */
  load(image: Uint8Array | ElfImage): ElfImage {
    return this.#life.load(image);
  }

  /**
   * Load a flat binary (raw code, no headers) at `address` (default: where ELFs link, window
   * base + 4 MiB), executable and read-only unless `writable`; `symbols` name offsets in it.
   */
  loadFlat(bytes: Uint8Array, options: { address?: number; writable?: boolean; symbols?: Record<string, number>; exports?: string[] } = {}): ElfImage {
    return this.load(flatImage(bytes, options.address ?? this.base + ELF_LINK_OFFSET, options));
  }

  /** Address of a symbol of the loaded program. */
  symbol(name: string): number {
    const p = this.#s.program;
    const s = p?.symbols.get(name);
    if (!s) throw new IpreError(p ? `${this.name}: no symbol "${name}" in the loaded program` : `${this.name}: no program loaded`);
    return s.value;
  }

  // ---- calls ----

  /**
   * vmcall: run `fn(args…)` in ring 3 until it returns; the result (RAX) as a signed number.
   * Integer args go in registers; Uint8Array and string args are copied to the guest stack and
   * passed as pointers (strings NUL-terminated).
   */
  call(fn: string | number, ...args: CallArg[]): number {
    this.#prepareCall(fn, args);
    runCall(this.#c, this.timeoutMs);
    return this.#c.vcpu.regSigned("rax");
  }
  /** Like call(), with the full 64-bit result as a bigint. */
  callBigInt(fn: string | number, ...args: CallArg[]): bigint {
    this.#prepareCall(fn, args);
    runCall(this.#c, this.timeoutMs);
    return BigInt.asIntN(64, this.#c.vcpu.regBigInt("rax"));
  }
  /** call() with options, e.g. `invoke("spin", [], { timeoutMs: 50 })`. */
  invoke(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): number {
    this.#prepareCall(fn, args);
    runCall(this.#c, options.timeoutMs ?? this.timeoutMs);
    return this.#c.vcpu.regSigned("rax");
  }
  /** invoke() with the full 64-bit result as a bigint. */
  invokeBigInt(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): bigint {
    this.#prepareCall(fn, args);
    runCall(this.#c, options.timeoutMs ?? this.timeoutMs);
    return BigInt.asIntN(64, this.#c.vcpu.regBigInt("rax"));
  }

  #prepareCall(fn: string | number, args: CallArg[]): void {
    requireUsable(this.#c);
    checkCall(this.#c, args.length);
    prepareCall(this.#c, typeof fn === "number" ? fn : this.symbol(fn), args);
  }

  /**
   * Run a static Linux program (ELF64 ET_EXEC linked at 0x400000 for window 0, e.g. built with
   * `gcc -static`) to completion: load it, build the initial process stack (argv, env, auxv),
   * enter e_entry in ring 3 and serve its system calls from TypeScript (src/linux/) until it calls
   * exit/exit_group; its exit code. If it calls ipre_wait_for_requests() instead, exec returns
   * Machine.WAITING and the machine is what create({ program }) gives: call() runs its functions
   * and reset() returns there. Every KVM flavour, PVM included. After reset() the machine can
   * exec again.
   */
  exec(program: Uint8Array, options: ExecOptions = {}): number {
    return this.#life.start(program, options, options.timeoutMs ?? this.timeoutMs).exitCode ?? Machine.WAITING;
  }

  /**
   * Where this machine's Linux program is: "starting" only inside its start-up run (from a
   * syscall handler), "waiting" after ipre_wait_for_requests(), "exited"; undefined when it runs
   * no Linux program.
   */
  get linuxPhase(): LinuxPhase | undefined {
    return this.#linux?.phase;
  }
  /** The exit code of this machine's Linux program once it exited (exec's result), else undefined. */
  get exitCode(): number | undefined {
    return this.#linux?.exitCode;
  }
  get #linux(): LinuxProcess<Machine> | undefined {
    return this.#life.linux;
  }

  /**
   * One KVM_RUN that runs a single ring-0 `out` (or, when the mailbox has work, applies it
   * first): the raw exit round-trip floor of this machine, for benchmarks.
   */
  serviceRun(): void {
    serviceRun(this.#c);
  }

  /** FSBASE (the thread pointer of guest TLS), loaded by the runtime at the next resume. */
  get fsBase(): number {
    return this.#s.fsBase;
  }
  set fsBase(value: number) {
    this.#s.setFsBase(value);
    loadFsBase(this.#s.mem, value);
  }

  /**
   * A handle to share this machine as a remote with other threads (Workers) of this process:
   * send it with postMessage, then `Remote.attach(handle)` there and `connect(caller, remote)`.
   * No copy: callers there map this machine's memory. close(), reset() and load() are refused
   * while Remotes are attached (docs/ARCHITECTURE.md §3).
   */
  share(): SharedRemote {
    return shareSpace(this.#s, this.#linux?.state());
  }

  /** Whether an IPRE call is in progress (e.g. from inside a hostcall). */
  get inRemoteCall(): boolean {
    return this.#c.stack.depth > 0;
  }

  // ---- snapshot, reset, close (lifecycle.ts) ----

  /**
   * Freeze the current state: memory is copied into a new memfd, and this machine continues on a
   * copy-on-write private mapping of it, so reset() can drop its changes and fork() can share it.
   */
  snapshot(): Snapshot {
    return this.#life.snapshot();
  }

  /**
   * Return user memory to the last snapshot, or without one to the implicit baseline: zeroed
   * memory plus the programs load() wrote (MADV_DONTNEED on the private mapping: only the pages
   * the guest dirtied are dropped). The vCPU is rebooted if it was stopped mid-guest. Not
   * reverted: the runtime area (page tables, so protect() and IPRE connections survive), fsBase,
   * hostcalls; but the page permissions a Linux program set (mmap, mprotect) go back to the
   * snapshot's, or to the defaults. Clears a pending "must reset" (a timeout inside a remote call).
   */
  reset(): void {
    this.#life.reset();
  }

  /** Release the vCPU, VM, memory and fds, and disconnect every IPRE connection. Idempotent. */
  close(): void {
    this.#life.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
