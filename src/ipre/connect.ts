/**
 * IPRE connections (docs/ARCHITECTURE.md §3): a caller gets the remote's memory as an extra
 * memslot at the remote's window, and a *merged* page-table root (its own tables plus the
 * remote's PDPT entry) that the ring-0 stub loads on entry to an allowed remote function and swaps
 * back on the return trap. No page table is written on the call path: merge and unmerge are CR3
 * loads.
 */
import { IpreError, MachineStateError, RemoteAccessError } from "../errors.ts";
import type { Cpu, RemoteLink, Space } from "../engine/owners.ts";
import { type CallPath, callPathDefault } from "../engine/fastpath.ts";
import { cpuOf, spaceOf } from "../engine/facade.ts";
import { flushPageTables } from "../engine/service.ts";
import { directCall, type CallArg } from "../engine/calls.ts";
import type { Machine } from "../machine/machine.ts";
import type { Remote } from "./share.ts";
import { loanEntry, tableEntry, writeRoot } from "../x86/paging.ts";

export type LoanMode = "none" | "read";

export interface ConnectOptions {
  /**
   * Entry points the caller may call: symbol names of the remote's program or addresses.
   * Default: the functions the remote exports (IPRE_EXPORT, section .ipre_export).
   */
  allow?: ReadonlyArray<string | number>;
  /** "read": the caller may read (not write, not execute) remote memory outside calls. Default "none". */
  loan?: LoanMode;
  /**
   * How caller code's calls into the remote are made (docs/ARCHITECTURE.md §3). "fast" (default):
   * the outermost call and its return are handled inside the guest by the runtime, without an
   * exit; everything else (nested calls, callbacks, a busy remote, a refused entry, faults,
   * hostcalls of the remote) goes through the host as with "trap". "trap": every call exits to
   * the host twice (entry and return). Same rules, same errors. Default: Machine.callPath. While
   * the caller has a Machine.onRemoteEntry hook, its calls take the host's path (so that the hook
   * sees each).
   */
  path?: CallPath;
}

interface LinkState extends RemoteLink {
  readonly slot: number;
  readonly rootIndex: number;
}

let makeConnection: (caller: Machine, remote: Machine | Remote, cpu: Cpu, link: LinkState) => Connection;

/** Options of a direct call ({@link Connection.invoke}). */
export interface DirectCallOptions {
  /** Time limit in ms (0: none); default the caller Machine's `timeoutMs`. */
  timeoutMs?: number;
}

/**
 * An IPRE connection from a caller to a remote. `disconnect()` (or dispose) undoes it.
 * `call()` runs an allowed function of the remote directly from JS on the caller's vCPU.
 */
export class Connection {
  #link: LinkState | undefined;
  readonly #caller: Cpu;
  /** How caller code's calls are made ("fast" or "trap"; ConnectOptions.path). */
  readonly path: CallPath;
  private constructor(readonly caller: Machine, readonly remote: Machine | Remote, callerCpu: Cpu, link: LinkState) {
    this.#caller = callerCpu;
    this.#link = link;
    this.path = link.path;
  }
  static {
    // Only connect() builds connections.
    makeConnection = (caller, remote, cpu, link) => new Connection(caller, remote, cpu, link);
  }

  get connected(): boolean {
    return this.#link !== undefined;
  }
  /** Allowed entry addresses. */
  get allowed(): ReadonlySet<number> {
    return this.#link?.allow ?? new Set();
  }
  get loan(): LoanMode {
    return this.#link?.loan ? "read" : "none";
  }

  /**
   * A direct call: run the remote's allowed function `fn` (a symbol of its program or an
   * address) from JS on the caller machine's vCPU, with no caller code in between, and return
   * its result (RAX) as a signed number. Arguments as Machine.call's (integers in registers;
   * Uint8Array and string args copied to the *caller's* stack and passed as pointers, which the
   * remote reads in place). One exit per call: the remote returns to the caller's exit trap.
   * Everything else is a guest-made remote call's: the allow-list (RemoteAccessError), one call
   * at a time per remote (a busy remote: RemoteAccessError), RemoteFault, hostcalls and syscalls
   * of the remote, callbacks into caller code, the caller's `timeoutMs` (docs/ARCHITECTURE.md
   * §3, "Direct calls"). Works the same on a connection to an attached Remote in a Worker.
   */
  call(fn: string | number, ...args: CallArg[]): number {
    this.#direct(fn, args, this.caller.timeoutMs);
    return this.#caller.vcpu.regSigned("rax");
  }
  /** Like call(), with the full 64-bit result as a bigint. */
  callBigInt(fn: string | number, ...args: CallArg[]): bigint {
    this.#direct(fn, args, this.caller.timeoutMs);
    return BigInt.asIntN(64, this.#caller.vcpu.regBigInt("rax"));
  }
  /** call() with options, e.g. `invoke("spin", [], { timeoutMs: 50 })`. */
  invoke(fn: string | number, args: CallArg[] = [], options: DirectCallOptions = {}): number {
    this.#direct(fn, args, options.timeoutMs ?? this.caller.timeoutMs);
    return this.#caller.vcpu.regSigned("rax");
  }
  /** invoke() with the full 64-bit result as a bigint. */
  invokeBigInt(fn: string | number, args: CallArg[] = [], options: DirectCallOptions = {}): bigint {
    this.#direct(fn, args, options.timeoutMs ?? this.caller.timeoutMs);
    return BigInt.asIntN(64, this.#caller.vcpu.regBigInt("rax"));
  }
  #direct(fn: string | number, args: readonly CallArg[], timeoutMs: number): void {
    const link = this.#link;
    if (link === undefined) throw new MachineStateError(`${this.#caller.name}: the connection to ${this.remote.name} is disconnected`);
    let entry = fn;
    if (typeof fn === "string") {
      const sym = link.remote.program?.symbols.get(fn);
      if (sym === undefined) throw new IpreError(`${link.remote.name}: no symbol "${fn}" in the remote's program`);
      entry = sym.value;
    }
    directCall(this.#caller, link, entry as number, args, timeoutMs);
  }

  /** Remove the mapping, the roots and the memslot. Idempotent. */
  disconnect(): void {
    const link = this.#link;
    if (!link) return;
    const caller = this.#caller;
    const remote = link.remote;
    if (caller.stack.depth > 0) throw new MachineStateError(`${caller.name} is inside a remote call`);
    this.#link = undefined;
    caller.unlink(link.window);
    remote.removeCaller(caller);
    if (caller.closed) return; // its VM goes away as a whole
    try {
      rebuildNormalRoot(caller); // a service run (the caller's vCPU is rebooted first if it was stopped mid-guest)
    } finally {
      // Even when that failed, the remote's memory leaves the caller's VM.
      caller.roots.free(link.rootIndex);
      caller.vm.setMemory({ slot: link.slot, guestPhysAddr: remote.base, size: 0, hostAddr: remote.mem.hostAddr });
      caller.slots.free(link.slot);
    }
  }
  [Symbol.dispose](): void {
    this.disconnect();
  }
}

/**
 * The root a caller runs on outside calls: its plain root, or, when some connection lends data,
 * a root that also maps the loaned windows read-only and no-execute.
 */
function rebuildNormalRoot(caller: Cpu): void {
  const loans = [...caller.links.values()].filter((l) => l.loan);
  const old = caller.loanRoot;
  if (loans.length === 0) {
    caller.useRoots(undefined);
    flushPageTables(caller);
    if (old) caller.roots.free(old.index);
    return;
  }
  const root = old ?? caller.roots.alloc();
  const own = caller.space;
  const entries = new Map<number, bigint>([[own.window, own.tables.windowEntry]]);
  for (const l of loans) entries.set(l.window, loanEntry(l.remote.tables.windowEntry));
  writeRoot(caller.ptq.pt, root.pml4, root.pdpt, entries);
  caller.useRoots(root);
  flushPageTables(caller);
}

/** Resolve allow-list entries to addresses inside the remote's program. */
function resolveAllow(remote: Space, allow: ReadonlyArray<string | number> | undefined): Set<number> {
  const program = remote.program;
  if (!program) throw new IpreError(`${remote.name} has no program loaded: load one before connecting`);
  const names = allow ?? program.exports;
  const out = new Set<number>();
  for (const a of names) {
    const addr = typeof a === "number" ? a : program.symbols.get(a)?.value;
    if (addr === undefined) throw new IpreError(`${remote.name}: no symbol "${a}" in the loaded program`);
    if (addr < remote.userStart || addr >= remote.memoryEnd) throw new RemoteAccessError(addr, `allowed entry 0x${addr.toString(16)} is outside ${remote.name}'s memory`);
    out.add(addr);
  }
  return out;
}

/**
 * Connect `caller` to `remote` (a Machine, or a Remote attached from another thread's share()):
 * afterwards caller code may call the remote's allowed functions by their addresses (a plain C
 * call; the symbols are absolute addresses in the remote's window).
 */
export function connect(caller: Machine, remote: Machine | Remote, options: ConnectOptions = {}): Connection {
  const own = spaceOf(caller);
  const r = spaceOf(remote);
  if (own === r) throw new IpreError("a machine cannot connect to itself");
  if (own.attached) throw new IpreError(`${own.name} is an attached Remote: only a Machine can be a caller`);
  const c = cpuOf(caller);
  if (c.closed || r.closed) throw new MachineStateError("cannot connect a closed machine");
  if (own.window === r.window) throw new IpreError(`${c.name} and ${r.name} share window ${own.window}; give the remote its own window (Machine.create({ window }))`);
  if (c.links.has(r.window)) throw new IpreError(`${c.name} already has a remote in window ${r.window}`);
  if (c.stack.depth > 0) throw new MachineStateError(`${c.name} is inside a remote call`);
  const loan = options.loan ?? "none";
  if (loan !== "none" && loan !== "read") throw new IpreError(`loan must be "none" or "read"`);
  const path = options.path ?? callPathDefault.value;
  if (path !== "fast" && path !== "trap") throw new IpreError(`path must be "fast" or "trap"`);
  const allow = resolveAllow(r, options.allow);

  const vm = c.vm;
  const slot = c.slots.alloc();
  const root = c.roots.alloc();
  let mapped = false;
  try {
    vm.setMemory({ slot, guestPhysAddr: r.base, size: r.memorySize, hostAddr: r.mem.hostAddr });
    mapped = true;
    // Merged root: the remote's window as it is, the caller's own window no-execute (so that a
    // callback into caller code exits to the VMM, which unmerges while caller code runs).
    own.tables.writeNoExecPd(c.ptq.pt, root.pd);
    writeRoot(c.ptq.pt, root.pml4, root.pdpt, new Map([
      [own.window, tableEntry(root.pd)],
      [r.window, r.tables.windowEntry],
    ]));
    const link: LinkState = { remote: r, window: r.window, allow, mergedRoot: root.pml4, slot, rootIndex: root.index, loan: loan === "read", path, disconnect: () => connection.disconnect() };
    const connection = makeConnection(caller, remote, c, link);
    c.link(link);
    r.addCaller(c);
    rebuildNormalRoot(c); // applies the queued root writes through the stub
    return connection;
  } catch (e) {
    c.unlink(r.window);
    r.removeCaller(c);
    c.roots.free(root.index);
    c.slots.free(slot);
    if (mapped && !c.closed) vm.setMemory({ slot, guestPhysAddr: r.base, size: 0, hostAddr: r.mem.hostAddr });
    throw e;
  }
}
