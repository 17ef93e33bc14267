/**
 * What each IPRE connection takes from a caller's Cpu (docs/ARCHITECTURE.md §3): a memslot for the
 * remote's memory, and pages of its runtime area's root pool for extra page-table roots, a (PML4,
 * PDPT, PD) triple each: a merged root per connected remote, one for loans.
 */
import { IpreError } from "../errors.ts";
import { PAGE_SIZE, RT } from "../guest/layout.ts";

/** An extra page-table root: (PML4, PDPT, PD) pages of the root pool. */
export interface Root {
  readonly pml4: number;
  readonly pdpt: number;
  readonly pd: number;
  readonly index: number;
}

/** Free root-pool pages for an extra root. */
export class RootPool {
  readonly #used: boolean[] = new Array<boolean>(RT.ROOT_POOL_ROOTS).fill(false);

  /** The pool of the window at `base`; `name` for messages. */
  constructor(readonly base: number, readonly name: string) {}

  alloc(): Root {
    const index = this.#used.indexOf(false);
    if (index < 0) throw new IpreError(`${this.name}: no free page-table root (at most ${RT.ROOT_POOL_ROOTS}: one per connected remote, plus one for loans)`);
    this.#used[index] = true;
    const pml4 = this.base + RT.ROOT_POOL + index * 3 * PAGE_SIZE;
    return { pml4, pdpt: pml4 + PAGE_SIZE, pd: pml4 + 2 * PAGE_SIZE, index };
  }
  free(index: number): void {
    this.#used[index] = false;
  }
}

/** Memslot numbers besides slot 0 (the machine's own memory): one per connected remote. */
export class SlotPool {
  readonly #used = new Set<number>();

  /** The lowest free slot above 0. */
  alloc(): number {
    let s = 1;
    while (this.#used.has(s)) s++;
    this.#used.add(s);
    return s;
  }
  free(slot: number): void {
    this.#used.delete(slot);
  }
}
