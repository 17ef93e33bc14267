/**
 * A Machine: one KVM VM with one vCPU, its guest memory (a memfd), the ring-0 runtime, page
 * tables, a loaded program, and the calls that run it. This file is the public facade; the work
 * is done by the modules beside it (docs/ARCHITECTURE.md §2):
 *
 *   memory.ts   guest memory: memfd, mapping, views, baseline, snapshot copy
 *   boot.ts     /dev/kvm, VM, memslot, vCPU, runtime area, special registers
 *   parked.ts   the TypeScript twin of guests/runtime/runtime.S: frame, mailbox, continuations
 *   service.ts  KVM_RUNs outside calls: boot, page-table flushes, recovery
 *   exits.ts    the exit loop of a call: hostcalls, IPRE requests, faults
 *   pointers.ts guest pointers, checked against the page tables the vCPU runs on
 *   ../ipre/    the IPRE frame stack (calls.ts) and connections (connect.ts)
 *
 * Longer than the others (~540 lines) on purpose: it is the whole public surface of a machine,
 * one short delegating member each, so a reader finds every operation a user can do in one file.
 *
 * Life of a vCPU: it boots once into the runtime and from then on is always *parked* in a ring-0
 * stub right after an `out` (§4). A call writes an iret frame and the argument registers and
 * resumes; the guest runs in ring 3 until it faults into a stub.
 */
import { GuestMemoryError, IpreError, MachineStateError, hex } from "../errors.ts";
import { flatImage, parseElf, type ElfImage } from "../guest/elf.ts";
import { DEFAULT_MEMORY, ELF_LINK_OFFSET, MAX_MEMORY, MAX_WINDOW, MiB, PAGE_SIZE, USER_OFFSET, WINDOW_SIZE } from "../guest/layout.ts";
import { PERM, type PagePerm, type WindowTables } from "../x86/paging.ts";
import { Core, NO_HANDLER, registerCore } from "../engine/core.ts";
import { GuestMemory } from "../engine/memory.ts";
import { createVm, releaseKvm, setSpecialRegisters, writeRuntimeArea } from "../engine/boot.ts";
import { boot, flushPageTables, recover, serviceLimit, serviceRun } from "../engine/service.ts";
import { clearMailbox, resumeFast, setFsBase, writeFrame } from "../engine/parked.ts";
import { runCall } from "../engine/exits.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { abortRemoteCall } from "../engine/frames.ts";
import { Snapshot } from "./snapshot.ts";
import { closeShared, refuseWhileAttached, shareCore, type SharedRemote } from "../ipre/share.ts";
import { isLinuxProgram, runLinux } from "../linux/loader.ts";
import { LinuxProcess, type LinuxOptions, type LinuxPhase } from "../linux/syscalls.ts";
import { compile, type CompileOptions } from "../guest/compile.ts";

export { HOSTCALL_PRINT } from "../guest/layout.ts";
export { kvmInfo, type KvmInfo } from "../engine/boot.ts";
export { Snapshot } from "./snapshot.ts";

/** A JS function the guest can call through a hostcall gate: six integer args, integer result. */
export type HostcallFn = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, machine: Machine) => number | bigint | void;

export type CallArg = number | bigint | boolean | Uint8Array | string;

/** Options of {@link Machine.exec}: argv, env, output sinks, syscall handlers (src/linux/syscalls.ts). */
export type ExecOptions = LinuxOptions<Machine> & CallOptions;

export interface MachineOptions {
  /** Guest memory in bytes, runtime area included (default 32 MiB, max 464 MiB). Rounded up to 2 MiB. */
  memory?: number;
  /** The 1 GiB window this machine owns (VA = GPA = window * 1 GiB). Default 0. */
  window?: number;
  /** Bytes of stack at the top of memory (default 1 MiB); a guard page sits below it. */
  stackSize?: number;
  /** Hostcall handlers by gate number (0-4094). */
  hostcalls?: Record<number, HostcallFn>;
  /** Where `ipre_print` output goes (default: console.log without the trailing newline). */
  print?: (text: string) => void;
  /**
   * A program to load right away: ELF64 bytes. A static Linux program (one with a C runtime:
   * glibc, musl, libstdc++, Rust std) is also started: its C runtime and main() run until it
   * calls ipre_wait_for_requests() (guests/linux/ipre_linux.h) or exits, then create() returns and
   * call() runs its functions; reset() returns to that point. See `linux`.
   */
  program?: Uint8Array;
  /**
   * C source to compile and load instead of `program`: built like the example guests for this
   * machine's window with the machine's C compiler and cached (see {@link compile}); a
   * CompileError when it does not build. Its messages name the source `<name>.c` when the
   * machine has a plain `name`, else `source.c`.
   */
  source?: string;
  /** With `source`: the remotes (machines or ELFs) whose exports the source calls, linked in by address. */
  linkAgainst?: CompileOptions["linkAgainst"];
  /**
   * How a Linux `program` runs (argv, env, output sinks, syscall handlers), or false to only
   * load it. Default: detected (the program has `__libc_start_main`); pass options (or true)
   * for a stripped program.
   */
  linux?: LinuxOptions<Machine> | boolean;
  /** A name for messages (default "machine@window"). */
  name?: string;
  /** Default execution timeout of every call, in ms (remote calls made inside it included). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Stop the guest and throw TimeoutError after this many ms (overrides the machine default; 0 = none). */
  timeoutMs?: number;
}

const ARG_REGS = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"] as const;
const encoder = new TextEncoder();

export class Machine {
  readonly #c: Core;
  readonly hostcalls: Map<number, HostcallFn>;
  /** Default timeout of calls in ms (0: none). */
  timeoutMs: number;
  /** The state reset() returns to (a fork's or the last snapshot), and the snapshots this machine owns. */
  #snapshot: Snapshot | undefined;
  #snapshots: Snapshot[] = [];
  /** The Linux program this machine runs (exec, or create with a Linux program). */
  #linux: LinuxProcess<Machine> | undefined;

  /** What exec() returns when the program called ipre_wait_for_requests() instead of exiting. */
  static readonly WAITING = -1;

  private constructor(options: MachineOptions) {
    const window = options.window ?? 0;
    if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW) throw new RangeError(`window must be an integer in 0..${MAX_WINDOW}`);
    const requested = options.memory ?? DEFAULT_MEMORY;
    const memory = Math.ceil(requested / (2 * MiB)) * 2 * MiB;
    if (!(memory >= 4 * MiB && memory <= MAX_MEMORY)) throw new RangeError(`memory must be between 4 MiB and ${MAX_MEMORY / MiB} MiB (got ${requested})`);
    const stackSize = Math.ceil((options.stackSize ?? 1 * MiB) / PAGE_SIZE) * PAGE_SIZE;
    if (stackSize < PAGE_SIZE || stackSize > memory - USER_OFFSET - 2 * PAGE_SIZE) throw new RangeError("stackSize does not fit in memory");
    const print = options.print ?? ((text: string) => console.log(text.endsWith("\n") ? text.slice(0, -1) : text));
    this.#c = new Core(options.name ?? `machine@${window}`, window, memory, stackSize, print);
    registerCore(this, this.#c);
    this.hostcalls = new Map(Object.entries(options.hostcalls ?? {}).map(([k, v]) => [Number(k), v]));
    this.#c.hostcall = (gate, a0, a1, a2, a3, a4, a5) => {
      const fn = this.hostcalls.get(gate);
      return fn === undefined ? NO_HANDLER : fn(a0, a1, a2, a3, a4, a5, this);
    };
    this.timeoutMs = options.timeoutMs ?? 0;
  }

  /** Create a VM, its memory and vCPU, boot the runtime, and optionally load a program. */
  static create(options: MachineOptions = {}): Machine {
    if (options.source !== undefined) {
      if (options.program !== undefined) throw new RangeError("Machine.create: give a program or a source, not both");
      // Compiled before any VM exists: a CompileError leaves nothing to close.
      // The compiler's messages name the source after the machine (`name: "store"`: store.c), else source.c.
      const file = options.name !== undefined && /^[\w.+-]+$/.test(options.name) ? (options.name.endsWith(".c") ? options.name : `${options.name}.c`) : "source.c";
      options = { ...options, program: compile(options.source, { window: options.window ?? 0, linkAgainst: options.linkAgainst, name: file }) };
    } else if (options.linkAgainst !== undefined) throw new RangeError("Machine.create: linkAgainst needs a source");
    const m = new Machine(options);
    try {
      const c = m.#c;
      c.attach(GuestMemory.create(c.base, c.memorySize, c.name));
      createVm(c);
      writeRuntimeArea(c);
      c.tables.init(c.mem.direct);
      c.tables.setPages(c.mem.direct, c.stackGuard, PAGE_SIZE, null); // a stack overflow faults
      setSpecialRegisters(c, c.vcpu!);
      boot(c, c.vcpu!);
      if (options.program) {
        const linux = options.linux === false ? undefined : options.linux === true ? {} : options.linux;
        if (linux !== undefined || (options.linux === undefined && isLinuxProgram(parseElf(options.program, { linux: true })))) {
          m.#start(options.program, linux ?? {}, m.timeoutMs);
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
    const m = new Machine({ ...options, window: snapshot.window, memory: snapshot.memorySize, stackSize: snapshot.stackSize, name: options.name ?? `fork of ${snapshot.source}` });
    try {
      const c = m.#c;
      c.attach(GuestMemory.fromSnapshot(c.base, c.memorySize, snapshot.fd));
      createVm(c);
      clearMailbox(c.mem);
      setSpecialRegisters(c, c.vcpu!);
      boot(c, c.vcpu!);
      c.program = snapshot.program;
      m.#snapshot = snapshot;
      const state = snapshot.linux;
      if (state !== undefined) {
        // A Linux program: its own syscall layer in the snapshot's state (sinks from `options.linux`).
        const proc = new LinuxProcess<Machine>(c, m, state.programEnd, { ...options.linux, path: state.path });
        proc.restore(state);
        c.syscall = proc.dispatch;
        m.#linux = proc;
      }
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

  // ---- identity and layout ----

  get name(): string {
    return this.#c.name;
  }
  get window(): number {
    return this.#c.window;
  }
  /** Window base: VA = GPA of the first byte of memory. */
  get base(): number {
    return this.#c.base;
  }
  /** Bytes of guest memory (runtime area included). */
  get memorySize(): number {
    return this.#c.memorySize;
  }
  get stackSize(): number {
    return this.#c.stackSize;
  }
  /** Where `ipre_print` output goes. */
  get print(): (text: string) => void {
    return this.#c.print;
  }
  set print(fn: (text: string) => void) {
    this.#c.print = fn;
  }
  /** The loaded program, if any. */
  get program(): ElfImage | undefined {
    return this.#c.program;
  }
  /** A call's return address: returning to it ends the call. */
  get exitTrap(): number {
    return this.#c.exitTrap;
  }
  /** Return address installed for remote calls made from this machine. */
  get returnTrap(): number {
    return this.#c.returnTrap;
  }
  /** Return address installed for callbacks from a remote into this machine's code. */
  get callbackTrap(): number {
    return this.#c.callbackTrap;
  }
  /** Address of hostcall gate 0 (gate n is 16 * n bytes above). */
  get gateBase(): number {
    return this.#c.gateBase;
  }
  /** Statistics: exits handled by calls since creation. */
  get exits(): number {
    return this.#c.exits;
  }
  set exits(n: number) {
    this.#c.exits = n;
  }
  /** Called on every IPRE entry (after the checks, before the remote runs); for tracing and benchmarks. */
  get onRemoteEntry(): ((entry: number) => void) | undefined {
    return this.#c.onRemoteEntry;
  }
  set onRemoteEntry(fn: ((entry: number) => void) | undefined) {
    this.#c.onRemoteEntry = fn;
  }
  /** This machine's page tables (read them with getPage; change them with protect()). */
  get tables(): WindowTables {
    return this.#c.tables;
  }
  /** Host address of guest memory. */
  get hostAddress(): number {
    return this.#c.mem.hostAddr;
  }
  /** The memfd under guest memory while it is the implicit baseline; -1 after snapshot(), for forks, and once closed. */
  get memfd(): number {
    return this.#c.mem.memfd;
  }
  /** First user address. */
  get userStart(): number {
    return this.#c.userStart;
  }
  get memoryEnd(): number {
    return this.#c.memoryEnd;
  }
  get stackTop(): number {
    return this.#c.memoryEnd;
  }
  /** The unmapped page below the stack. */
  get stackGuard(): number {
    return this.#c.stackGuard;
  }

  /** Change user page permissions (null unmaps), applied through the runtime. */
  protect(address: number, length: number, perm: PagePerm | null): void {
    const c = this.#c;
    c.tables.setPages(c.ptq.pt, address, length, perm);
    flushPageTables(c);
  }

  // ---- memory: the host's own access, and guest pointers ----

  #offset(address: number, length: number): number {
    const c = this.#c;
    if (c.closed) throw new MachineStateError(`${c.name} is closed`);
    if (!(Number.isFinite(address) && length >= 0 && address >= c.userStart && address + length <= c.memoryEnd)) {
      throw new GuestMemoryError(address, length, `${c.name}: range ${hex(address)}+${length} is outside user memory [${hex(c.userStart)}, ${hex(c.memoryEnd)})`);
    }
    return address - c.base;
  }

  /**
   * A zero-copy view of guest user memory [address, address+length); throws GuestMemoryError when
   * out of range. Inside one of this machine's hostcall handlers, the address is a guest pointer:
   * it is resolved with the rights of the code that made the hostcall (see {@link guestRead}), and
   * may designate a connected remote's memory where that code may read it.
   */
  bytes(address: number, length: number): Uint8Array {
    return GuestMemory.lend(this.#view(address, length, false));
  }
  read(address: number, length: number): Uint8Array {
    return this.bytes(address, length).slice();
  }
  /** Copy into guest memory; inside a hostcall handler the pages must be writable by the code that made it. */
  write(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.#view(address, bytes.length, true).set(bytes);
  }
  readU64(address: number): bigint {
    const b = this.#view(address, 8, false);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  writeU64(address: number, value: bigint | number): void {
    const b = this.#view(address, 8, true);
    new DataView(b.buffer, b.byteOffset, 8).setBigUint64(0, BigInt.asUintN(64, BigInt(value)), true);
  }
  readI64(address: number): number {
    return Number(BigInt.asIntN(64, this.readU64(address)));
  }
  /** A NUL-terminated string (at most maxLength bytes). */
  readCString(address: number, maxLength = 4096): string {
    if (this.#c.hostcallRunner !== undefined) return this.guestCString(address, maxLength);
    const mem = this.#c.mem.u8;
    const off = this.#offset(address, 1);
    const end = Math.min(mem.length, off + maxLength);
    let i = off;
    while (i < end && mem[i] !== 0) i++;
    return new TextDecoder().decode(mem.subarray(off, i));
  }
  #view(address: number, length: number, write: boolean): Uint8Array {
    const runner = this.#c.hostcallRunner;
    if (runner !== undefined) return guestRange(runner, address, length, write);
    const off = this.#offset(address, length);
    return this.#c.mem.u8.subarray(off, off + length);
  }
  /** Guest memory of the whole window, runtime area included (host-side tooling and tests). */
  rawMemory(): Uint8Array {
    return GuestMemory.lend(this.#c.mem.u8);
  }

  /**
   * For hostcall handlers: a copy of the bytes a guest pointer designates, read with the rights of
   * the guest code that made the hostcall (the page tables it runs on: its own window; a remote's
   * only while that remote's code runs inside a call; a loaned window read-only). Outside a
   * hostcall: with the rights of this machine's code outside calls. GuestMemoryError otherwise.
   * (`bytes()`/`read()` are the host's own unchecked access to this machine's user memory.)
   */
  guestRead(address: number, length: number): Uint8Array {
    return guestRange(this.#c.hostcallRunner ?? this.#c, address, length, false).slice();
  }
  /** Like {@link guestRead}, for writing: the pages must be writable by that code. */
  guestWrite(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    guestRange(this.#c.hostcallRunner ?? this.#c, address, bytes.length, true).set(bytes);
  }
  /** Like {@link guestRead}, for a NUL-terminated string of at most maxLength bytes. */
  guestCString(address: number, maxLength = 4096): string {
    return guestCString(this.#c.hostcallRunner ?? this.#c, address, maxLength);
  }

  // ---- programs ----

  /** Load a static ELF64 executable linked for this machine's window. */
  load(image: Uint8Array | ElfImage): ElfImage {
    const c = this.#c;
    this.#requireUsable();
    if (c.callers.size > 0) throw new MachineStateError(`${c.name} is connected as a remote; disconnect its callers before loading a program (their VMs cache its page tables)`);
    refuseWhileAttached(c, "load a program into");
    const elf = image instanceof Uint8Array ? parseElf(image) : image;
    for (const seg of elf.segments) {
      const end = seg.vaddr + seg.memsz;
      if (seg.vaddr < c.userStart || end > c.stackGuard) {
        const w = Math.floor(seg.vaddr / WINDOW_SIZE);
        const hint = w !== c.window ? ` (the program is linked for window ${w}; this machine is window ${c.window})` : ` (user memory is [${hex(c.userStart)}, ${hex(c.stackGuard)}) below the stack)`;
        throw new GuestMemoryError(seg.vaddr, seg.memsz, `ELF segment ${hex(seg.vaddr)}+0x${seg.memsz.toString(16)} does not fit this machine${hint}`);
      }
    }
    // Pages of a previous program go back to the default (RW, no-exec) first.
    for (const seg of c.program?.segments ?? []) c.tables.setPages(c.ptq.pt, seg.vaddr, seg.memsz, PERM.RW);
    const place = (mem: Uint8Array) => {
      for (const seg of elf.segments) {
        const off = seg.vaddr - c.base;
        mem.set(seg.data, off);
        mem.fill(0, off + seg.filesz, off + seg.memsz);
      }
    };
    c.mem.withBaseline(place); // what reset() returns to when there is no snapshot
    place(c.mem.u8);
    for (const seg of elf.segments) {
      const perm: PagePerm = seg.executable ? PERM.RX : seg.writable ? PERM.RW : PERM.R;
      if (perm !== PERM.RW) c.tables.setPages(c.ptq.pt, seg.vaddr, seg.memsz, perm);
    }
    flushPageTables(c);
    c.program = elf;
    return elf;
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
    const p = this.#c.program;
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
    return this.#c.vcpu!.regSigned("rax");
  }
  /** Like call(), with the full 64-bit result as a bigint. */
  callBigInt(fn: string | number, ...args: CallArg[]): bigint {
    this.#prepareCall(fn, args);
    runCall(this.#c, this.timeoutMs);
    return BigInt.asIntN(64, this.#c.vcpu!.regBigInt("rax"));
  }
  /** call() with options, e.g. `invoke("spin", [], { timeoutMs: 50 })`. */
  invoke(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): number {
    this.#prepareCall(fn, args);
    runCall(this.#c, options.timeoutMs ?? this.timeoutMs);
    return this.#c.vcpu!.regSigned("rax");
  }
  /** invoke() with the full 64-bit result as a bigint. */
  invokeBigInt(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): bigint {
    this.#prepareCall(fn, args);
    runCall(this.#c, options.timeoutMs ?? this.timeoutMs);
    return BigInt.asIntN(64, this.#c.vcpu!.regBigInt("rax"));
  }

  #prepareCall(fn: string | number, args: CallArg[]): void {
    const c = this.#c;
    this.#requireUsable();
    if (c.busyWith) throw new MachineStateError(`${c.name} is inside a remote call from ${c.busyWith.name}`);
    if (c.inCall) throw new MachineStateError(`${c.name} is already running a call (call() from inside one of its hostcalls is not supported)`);
    if (args.length > ARG_REGS.length) throw new RangeError(`at most ${ARG_REGS.length} arguments`);
    const target = typeof fn === "number" ? fn : this.symbol(fn);
    if (!Number.isSafeInteger(target)) throw new RangeError(`call target must be an integer address (got ${target})`);
    const vcpu = c.vcpu!;
    let sp = c.callStackTop || c.memoryEnd;
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const reg = ARG_REGS[i]!;
      if (typeof a === "number") vcpu.setReg(reg, a);
      else if (typeof a === "bigint") vcpu.setRegBigInt(reg, a);
      else if (typeof a === "boolean") vcpu.setReg(reg, a ? 1 : 0);
      else {
        const bytes = typeof a === "string" ? encoder.encode(a + "\0") : a;
        sp = Math.floor((sp - bytes.length) / 16) * 16;
        if (sp < c.memoryEnd - c.stackSize / 2) throw new RangeError("arguments take more than half of the stack");
        c.mem.u8.set(bytes, sp - c.base);
        vcpu.setReg(reg, sp);
      }
    }
    // Return address = the exit trap; RSP ≡ 8 (mod 16) at function entry (SysV ABI).
    sp -= 8;
    c.mem.setU64At((sp - c.base) >> 2, c.exitTrap);
    writeFrame(c.mem, target, sp);
    resumeFast(c.mem, vcpu, c.base);
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
    return this.#start(program, options, options.timeoutMs ?? this.timeoutMs).exitCode ?? Machine.WAITING;
  }

  #start(program: Uint8Array, options: LinuxOptions<Machine>, timeoutMs: number): LinuxProcess<Machine> {
    const c = this.#c;
    this.#requireUsable();
    if (c.busyWith) throw new MachineStateError(`${c.name} is inside a remote call from ${c.busyWith.name}`);
    if (c.inCall) throw new MachineStateError(`${c.name} is already running a call`);
    const parsed = parseElf(program, { linux: true, base: this.base + ELF_LINK_OFFSET }); // a static-PIE goes to this window
    refuseWhileAttached(c, "load a program into");
    this.#linux?.memory.restore(undefined); // pages a previous program protected go back to their defaults
    this.#linux?.close(); // its host fds
    const elf = this.load(parsed);
    this.#linux = undefined;
    const proc = runLinux<Machine>(c, this, program, elf, options, timeoutMs);
    this.#linux = proc;
    // Initialised and waiting: that is the state reset() returns to (and fork() starts from).
    if (proc.phase === "waiting") this.snapshot();
    return proc;
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

  /**
   * One KVM_RUN that runs a single ring-0 `out` (or, when the mailbox has work, applies it
   * first): the raw exit round-trip floor of this machine, for benchmarks.
   */
  serviceRun(): void {
    serviceRun(this.#c);
  }

  /** FSBASE (the thread pointer of guest TLS), loaded by the runtime at the next resume. */
  get fsBase(): number {
    return this.#c.fsBase;
  }
  set fsBase(value: number) {
    this.#c.fsBase = value;
    setFsBase(this.#c.mem, value);
  }

  /**
   * A handle to share this machine as a remote with other threads (Workers) of this process:
   * send it with postMessage, then `Remote.attach(handle)` there and `connect(caller, remote)`.
   * No copy: callers there map this machine's memory. close(), reset() and load() are refused
   * while Remotes are attached (docs/ARCHITECTURE.md §3).
   */
  share(): SharedRemote {
    return shareCore(this.#c, this.#linux?.state());
  }

  /** Whether an IPRE call is in progress (e.g. from inside a hostcall). */
  get inRemoteCall(): boolean {
    return this.#c.frames.length > 0;
  }

  #requireUsable(): void {
    const c = this.#c;
    c.requireVcpu();
    if (c.mustReset !== undefined) throw new MachineStateError(`${c.name} must be reset before it is used again (${c.mustReset})`);
    if (c.broken !== undefined) recover(c);
  }

  /** Why the machine refuses calls until reset(), or undefined. */
  get needsReset(): string | undefined {
    return this.#c.mustReset;
  }

  // ---- snapshot, reset, close ----

  /**
   * Freeze the current state: memory is copied into a new memfd, and this machine continues on a
   * copy-on-write private mapping of it, so reset() can drop its changes and fork() can share it.
   */
  snapshot(): Snapshot {
    const c = this.#c;
    this.#requireUsable();
    if (c.frames.length > 0 || c.busyWith) throw new MachineStateError(`${c.name} is inside a remote call`);
    const fd = c.mem.freeze(`snapshot-${c.name}`);
    const snap = new Snapshot(fd, c.window, c.memorySize, c.stackSize, c.program, c.name, this.#linux?.state());
    this.#snapshots.push(snap);
    this.#snapshot = snap;
    return snap;
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
    const c = this.#c;
    c.requireVcpu();
    if (c.inCall || (c.busyWith !== undefined && c.busyWith.inCall)) throw new MachineStateError(`cannot reset ${c.name} while ${c.busyWith?.name ?? c.name} is running a call into it; reset it after the call`);
    if (!this.#snapshot && c.mem.memfd < 0) throw new MachineStateError(`${c.name} has no snapshot or baseline to reset to`);
    refuseWhileAttached(c, "reset");
    abortRemoteCall(c);
    c.mem.discard(USER_OFFSET);
    if (this.#snapshot) c.program = this.#snapshot.program;
    // A Linux program goes back to the snapshot's state of it, or is gone with the memory it ran in.
    const state = this.#snapshot?.linux;
    if (this.#linux !== undefined && state !== undefined) this.#linux.restore(state);
    else if (this.#linux !== undefined || c.syscall !== undefined) {
      this.#linux?.memory.restore(undefined); // the pages it protected go back to their defaults
      this.#linux?.close(); // its host fds
      this.#linux = undefined;
      c.syscall = undefined;
      c.callStackTop = 0;
    }
    c.mustReset = undefined;
    c.busyWith = undefined;
    if (c.broken !== undefined) recover(c);
  }

  get closed(): boolean {
    return this.#c.closed;
  }

  /** Release the vCPU, VM, memory and fds, and disconnect every IPRE connection. Idempotent. */
  close(): void {
    const c = this.#c;
    if (c.closed) return;
    // Not from inside a call that runs on this vCPU or uses this memory (a hostcall handler).
    const running = c.inCall ? c : [...c.callers].find((k) => k.inCall);
    if (running) throw new MachineStateError(`cannot close ${c.name} while ${running.name} is running a call${running === c ? "" : " (it maps this machine's memory)"}; close it after the call`);
    closeShared(c); // refused while other threads' Remotes map this memory
    // From here on nothing runs this vCPU: its own links go without a page-table service run.
    c.closed = true;
    let error: unknown;
    // Callers map this memory: unmap it from their VMs before it goes away (a caller's service
    // run that fails leaves that caller to reboot its vCPU; this machine closes all the same).
    for (const caller of [...c.callers]) {
      try {
        caller.links.get(c.window)?.disconnect();
      } catch (e) {
        error ??= e;
      }
    }
    for (const link of [...c.links.values()]) link.disconnect();
    for (const snap of this.#snapshots) snap.close();
    this.#snapshots = [];
    this.#linux?.close(); // the host files its program has open
    c.vcpu?.close();
    c.vm?.close();
    c.mem.close();
    if (c.kvm) releaseKvm();
    c.kvm = undefined;
    if (error !== undefined) throw error;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
