/**
 * The fixed geometry of one window (docs/ARCHITECTURE.md §3): where its memory, stack, traps and
 * runtime entry lie, and its page tables. A Space (owners.ts) is a WindowLayout with the state
 * that changes.
 */
import { EXIT_TRAP_OFFSET, HOSTCALL_GATE_COUNT, HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE, PAGE_SIZE, RETURN_TRAP_OFFSET, RT, USER_OFFSET, windowBase } from "../guest/layout.ts";
import { WindowTables } from "../x86/paging.ts";
import { ENTRY } from "./parked.ts";

/** The gate range's pages (16), each mapping the runtime's one page of 256 gates (docs/ARCHITECTURE.md §4). */
const GATE_PAGES = (HOSTCALL_GATE_COUNT * HOSTCALL_GATE_STRIDE) / PAGE_SIZE;

export interface WindowShape {
  readonly name: string;
  readonly window: number;
  readonly memorySize: number;
  readonly stackSize: number;
}

export class WindowLayout {
  readonly name: string;
  readonly window: number;
  readonly memorySize: number;
  readonly stackSize: number;
  readonly base: number;
  readonly tables: WindowTables;
  /** A call's return address: returning to it ends the call. */
  readonly exitTrap: number;
  /** Return address installed for remote calls made from this window's code. */
  readonly returnTrap: number;
  /** Return address installed for callbacks from a remote into this window's code. */
  readonly callbackTrap: number;
  /** Hostcall gate 0 (gate n is HOSTCALL_GATE_STRIDE * n above). */
  readonly gateBase: number;
  /** MSR_LSTAR: syscall_entry. On PVM a ring-3 `syscall` faults fetching it (exits.ts). */
  readonly lstar: number;
  readonly userStart: number;
  readonly memoryEnd: number;
  /** The unmapped page below the stack. */
  readonly stackGuard: number;

  constructor(shape: WindowShape) {
    const base = windowBase(shape.window);
    this.name = shape.name;
    this.window = shape.window;
    this.memorySize = shape.memorySize;
    this.stackSize = shape.stackSize;
    this.base = base;
    const gates = { va: base + HOSTCALL_GATE_OFFSET, pages: GATE_PAGES, pt: base + RT.GATE_PT, page: base + ENTRY.gates };
    this.tables = new WindowTables({ base, memory: shape.memorySize, pml4: base + RT.PML4, pdpt: base + RT.PDPT, pd: base + RT.PD, ptBase: base + RT.PT_BASE, gates });
    this.exitTrap = base + EXIT_TRAP_OFFSET;
    this.returnTrap = base + RETURN_TRAP_OFFSET;
    this.callbackTrap = this.returnTrap + HOSTCALL_GATE_STRIDE;
    this.gateBase = base + HOSTCALL_GATE_OFFSET;
    this.lstar = base + ENTRY.syscall;
    this.userStart = base + USER_OFFSET;
    this.memoryEnd = base + shape.memorySize;
    this.stackGuard = this.memoryEnd - shape.stackSize - PAGE_SIZE;
  }
}
