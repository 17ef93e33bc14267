/**
 * IPRE connections (docs/ARCHITECTURE.md §3): a caller gets the remote's memory as an extra memslot at the
 * remote's window, and a *merged* page-table root (its own tables plus the remote's PDPT entry)
 * that the ring-0 stub loads on entry to an allowed remote function and swaps back on the
 * return trap. No page table is written on the call path: merge and unmerge are CR3 loads.
 */
import { IpreError, MachineStateError, RemoteAccessError } from "./errors.ts";
import type { Machine, RemoteLink } from "./machine.ts";
import { loanEntry, tableEntry, writeRoot } from "./x86/paging.ts";

export type LoanMode = "none" | "read";

export interface ConnectOptions {
  /**
   * Entry points the caller may call: symbol names of the remote's program or addresses.
   * Default: the functions the remote exports (IPRE_EXPORT, section .ipre_export).
   */
  allow?: ReadonlyArray<string | number>;
  /** "read": the caller may read (not write, not execute) remote memory outside calls. Default "none". */
  loan?: LoanMode;
}

interface LinkState extends RemoteLink {
  slot: number;
  rootIndex: number;
  loan: LoanMode;
  disconnect: () => void;
}

/** An IPRE connection from a caller to a remote. `disconnect()` (or dispose) undoes it. */
export class Connection {
  #link: LinkState | undefined;
  constructor(readonly caller: Machine, readonly remote: Machine, link: LinkState) {
    this.#link = link;
  }
  get connected(): boolean {
    return this.#link !== undefined;
  }
  /** Allowed entry addresses. */
  get allowed(): ReadonlySet<number> {
    return this.#link?.allow ?? new Set();
  }
  get loan(): LoanMode {
    return this.#link?.loan ?? "none";
  }

  /** Remove the mapping, the roots and the memslot. Idempotent. */
  disconnect(): void {
    const link = this.#link;
    if (!link) return;
    const { caller, remote } = this;
    if (caller.inRemoteCall) throw new MachineStateError(`${caller.name} is inside a remote call`);
    this.#link = undefined;
    caller.links.delete(link.window);
    remote.callers.delete(caller);
    if (caller.closed) return; // its VM goes away as a whole
    try {
      rebuildNormalRoot(caller); // a service run (the caller's vCPU is rebooted first if it was stopped mid-guest)
    } finally {
      // Even when that failed, the remote's memory leaves the caller's VM.
      caller.freeRoot(link.rootIndex);
      caller.setMemslot(link.slot, remote.base, 0, remote.hostAddress);
      freeSlot(caller, link.slot);
    }
  }
  [Symbol.dispose](): void {
    this.disconnect();
  }
}

const slots = new WeakMap<Machine, Set<number>>();
function allocSlot(m: Machine): number {
  const used = slots.get(m) ?? new Set<number>();
  slots.set(m, used);
  let s = 1;
  while (used.has(s)) s++;
  used.add(s);
  return s;
}
function freeSlot(m: Machine, s: number): void {
  slots.get(m)?.delete(s);
}

const loanRoots = new WeakMap<Machine, ReturnType<Machine["allocRoot"]>>();

/**
 * The root a caller runs on outside calls: its plain root, or, when some connection lends data,
 * a root that also maps the loaned windows read-only and no-execute.
 */
function rebuildNormalRoot(caller: Machine): void {
  const loans = [...caller.links.values()].filter((l) => (l as LinkState).loan === "read");
  const old = loanRoots.get(caller);
  if (loans.length === 0) {
    caller.normalRoot = caller.tables.root;
    caller.flushPageTables(caller.normalRoot);
    if (old) {
      caller.freeRoot(old.index);
      loanRoots.delete(caller);
    }
    return;
  }
  const root = old ?? caller.allocRoot();
  const entries = new Map<number, bigint>([[caller.window, caller.tables.windowEntry]]);
  for (const l of loans) entries.set(l.window, loanEntry(l.remote.tables.windowEntry));
  writeRoot(caller.pt, root.pml4, root.pdpt, entries);
  loanRoots.set(caller, root);
  caller.normalRoot = root.pml4;
  caller.flushPageTables(caller.normalRoot);
}

/** Resolve allow-list entries to addresses inside the remote's program. */
function resolveAllow(remote: Machine, allow: ReadonlyArray<string | number> | undefined): Set<number> {
  const program = remote.program;
  if (!program) throw new IpreError(`${remote.name} has no program loaded: load one before connecting`);
  const names = allow ?? program.exports;
  const out = new Set<number>();
  for (const a of names) {
    const addr = typeof a === "number" ? a : remote.symbol(a);
    if (addr < remote.userStart || addr >= remote.memoryEnd) throw new RemoteAccessError(addr, `allowed entry 0x${addr.toString(16)} is outside ${remote.name}'s memory`);
    out.add(addr);
  }
  return out;
}

/**
 * Connect `caller` to `remote`: afterwards caller code may call the remote's allowed functions
 * by their addresses (a plain C call; the symbols are absolute addresses in the remote's window).
 */
export function connect(caller: Machine, remote: Machine, options: ConnectOptions = {}): Connection {
  if (caller === remote) throw new IpreError("a machine cannot connect to itself");
  if (caller.closed || remote.closed) throw new MachineStateError("cannot connect a closed machine");
  if (caller.window === remote.window) throw new IpreError(`${caller.name} and ${remote.name} share window ${caller.window}; give the remote its own window (Machine.create({ window }))`);
  if (caller.links.has(remote.window)) throw new IpreError(`${caller.name} already has a remote in window ${remote.window}`);
  if (caller.inRemoteCall) throw new MachineStateError(`${caller.name} is inside a remote call`);
  const loan = options.loan ?? "none";
  if (loan !== "none" && loan !== "read") throw new IpreError(`loan must be "none" or "read"`);
  const allow = resolveAllow(remote, options.allow);

  const slot = allocSlot(caller);
  const root = caller.allocRoot();
  let mapped = false;
  try {
    caller.setMemslot(slot, remote.base, remote.memorySize, remote.hostAddress);
    mapped = true;
    // Merged root: the remote's window as it is, the caller's own window no-execute (so that a
    // callback into caller code exits to the VMM, which unmerges while caller code runs).
    caller.tables.writeNoExecPd(caller.pt, root.pd);
    writeRoot(caller.pt, root.pml4, root.pdpt, new Map([
      [caller.window, tableEntry(root.pd)],
      [remote.window, remote.tables.windowEntry],
    ]));
    const link: LinkState = { remote, window: remote.window, allow, mergedRoot: root.pml4, slot, rootIndex: root.index, loan, disconnect: () => connection.disconnect() };
    const connection = new Connection(caller, remote, link);
    caller.links.set(remote.window, link);
    remote.callers.add(caller);
    rebuildNormalRoot(caller); // applies the queued root writes through the stub
    return connection;
  } catch (e) {
    caller.links.delete(remote.window);
    remote.callers.delete(caller);
    caller.freeRoot(root.index);
    freeSlot(caller, slot);
    if (mapped && !caller.closed) caller.setMemslot(slot, remote.base, 0, remote.hostAddress);
    throw e;
  }
}
