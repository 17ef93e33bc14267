/**
 * What a machine is, read only: its name, window and layout, the page tables and program it has,
 * whether it is closed. The public Machine (machine.ts) extends it; both read the same Space
 * (src/engine/owners.ts).
 */
import type { ElfImage } from "../guest/elf.ts";
import type { WindowTables } from "../x86/paging.ts";
import type { Space } from "../engine/owners.ts";

export class MachineLayout {
  readonly #space: Space;
  protected constructor(space: Space) {
    this.#space = space;
  }


  get name(): string {
    return this.#space.name;
  }
  get window(): number {
    return this.#space.window;
  }
  /** Window base: VA = GPA of the first byte of memory. */
  get base(): number {
    return this.#space.base;
  }
  /** Bytes of guest memory (runtime area included). */
  get memorySize(): number {
    return this.#space.memorySize;
  }
  get stackSize(): number {
    return this.#space.stackSize;
  }
  /** The loaded program, if any. */
  get program(): ElfImage | undefined {
    return this.#space.program;
  }
  /** A call's return address: returning to it ends the call. */
  get exitTrap(): number {
    return this.#space.exitTrap;
  }
  /** Return address installed for remote calls made from this machine. */
  get returnTrap(): number {
    return this.#space.returnTrap;
  }
  /** Return address installed for callbacks from a remote into this machine's code. */
  get callbackTrap(): number {
    return this.#space.callbackTrap;
  }
  /** Address of hostcall gate 0 (gate n is 16 * n bytes above). */
  get gateBase(): number {
    return this.#space.gateBase;
  }
  /** This machine's page tables (read them with getPage; change them with protect()). */
  get tables(): WindowTables {
    return this.#space.tables;
  }
  /** Host address of guest memory. */
  get hostAddress(): number {
    return this.#space.mem.hostAddr;
  }
  /** The memfd under guest memory while it is the implicit baseline; -1 after snapshot(), for forks, and once closed. */
  get memfd(): number {
    return this.#space.mem.memfd;
  }
  /** First user address. */
  get userStart(): number {
    return this.#space.userStart;
  }
  get memoryEnd(): number {
    return this.#space.memoryEnd;
  }
  get stackTop(): number {
    return this.#space.memoryEnd;
  }
  /** The unmapped page below the stack. */
  get stackGuard(): number {
    return this.#space.stackGuard;
  }
  get closed(): boolean {
    return this.#space.closed;
  }
  /** Why the machine refuses calls until reset(), or undefined. */
  get needsReset(): string | undefined {
    return this.#space.mustReset;
  }
}
