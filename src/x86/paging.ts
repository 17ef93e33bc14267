/**
 * 4-level x86-64 paging (Intel SDM Vol. 3A §4.5): entry encoding and a builder for one window's
 * identity-mapped tables. Pure: it reads and writes 64-bit entries through a {@link PtMemory},
 * which the machine backs either by direct stores (before the VM first runs) or by the ring-0
 * stub's mailbox (after, so that a shadow-paging hypervisor sees the write, docs/ARCHITECTURE.md §4).
 */
export const PTE = {
  P: 1n,
  RW: 2n,
  US: 4n,
  PWT: 8n,
  PCD: 16n,
  A: 32n,
  D: 64n,
  /** Page size: 2 MiB page in a PD entry. */
  PS: 128n,
  G: 256n,
  NX: 1n << 63n,
} as const;

/** Address bits 51:12 of an entry. */
export const ADDR_MASK = 0x000f_ffff_ffff_f000n;
export const ENTRIES = 512;
/** Bytes mapped by one entry at each level. */
export const SPAN = { PT: 4096, PD: 2 * 1024 * 1024, PDPT: 1024 ** 3, PML4: 512 * 1024 ** 3 } as const;
/** A 4 KiB page: what one PT entry maps. */
const PAGE = SPAN.PT;

/** Permissions of a user page. */
export interface PagePerm {
  write: boolean;
  exec: boolean;
}
export const PERM = {
  RX: { write: false, exec: true },
  R: { write: false, exec: false },
  RW: { write: true, exec: false },
  RWX: { write: true, exec: true },
} as const satisfies Record<string, PagePerm>;

/** Flags of a non-leaf entry: present, writable, user; A set so the CPU need not set it. */
export const TABLE_FLAGS = PTE.P | PTE.RW | PTE.US | PTE.A;

/** A user (ring-3) 4 KiB leaf entry. A and D are preset: no hardware A/D updates on the hot path. */
export function userPte(address: number, perm: PagePerm): bigint {
  let e = (BigInt(address) & ADDR_MASK) | PTE.P | PTE.US | PTE.A | PTE.D;
  if (perm.write) e |= PTE.RW;
  if (!perm.exec) e |= PTE.NX;
  return e;
}

/** One PT of user entries for [va0, va0 + 2 MiB), the same values as userPte() but without BigInt. */
function writeUserPtParts(write: (gpa: number, lo: number, hi: number) => void, pt: number, va0: number, perm: PagePerm): void {
  const flags = Number(PTE.P | PTE.US | PTE.A | PTE.D | (perm.write ? PTE.RW : 0n));
  const nx = perm.exec ? 0 : 0x80000000;
  for (let j = 0; j < ENTRIES; j++) {
    const va = va0 + j * PAGE;
    const hi = Math.floor(va / 2 ** 32);
    write(pt + j * 8, ((va - hi * 2 ** 32) | flags) >>> 0, (hi | nx) >>> 0);
  }
}

/** A supervisor-only 2 MiB page (runtime area: ring 0 only, RWX). */
export function supervisorLargePage(address: number): bigint {
  return (BigInt(address) & ADDR_MASK) | PTE.P | PTE.RW | PTE.PS | PTE.A | PTE.D;
}

export function tableEntry(tableAddress: number, flags = TABLE_FLAGS): bigint {
  return (BigInt(tableAddress) & ADDR_MASK) | flags;
}

/** Where a table entry for `va` sits: index at each level. */
export function indices(va: number): { pml4: number; pdpt: number; pd: number; pt: number } {
  return {
    pml4: Math.floor(va / SPAN.PML4) % ENTRIES,
    pdpt: Math.floor(va / SPAN.PDPT) % ENTRIES,
    pd: Math.floor(va / SPAN.PD) % ENTRIES,
    pt: Math.floor(va / SPAN.PT) % ENTRIES,
  };
}

/** 64-bit entry storage addressed by guest-physical address. */
export interface PtMemory {
  read64(gpa: number): bigint;
  write64(gpa: number, value: bigint): void;
  /** Optional fast path for bulk writes: the entry as two 32-bit halves (no BigInt). */
  write64Parts?(gpa: number, lo: number, hi: number): void;
}

export interface WindowTablesSpec {
  /** Window base (VA = GPA), a multiple of 1 GiB. */
  base: number;
  /** Bytes of guest memory from the base, a multiple of 2 MiB; the first 2 MiB are the runtime area. */
  memory: number;
  /** GPA of the PML4 page, the PDPT page, the PD page and the first PT page (PTs are consecutive). */
  pml4: number;
  pdpt: number;
  pd: number;
  ptBase: number;
  /**
   * Hostcall gate pages: `pages` 4 KiB pages from `va` (in a 2 MiB region above user memory),
   * each mapping the one page at GPA `page` user read-only and executable, through the PT at
   * GPA `pt`. The runtime's gates run in ring 3 (docs/ARCHITECTURE.md §4).
   */
  gates?: { va: number; pages: number; pt: number; page: number };
}

/**
 * The identity-mapped tables of one window: PML4[0] → PDPT, PDPT[window] → PD, PD[0] = the
 * runtime area as one supervisor 2 MiB page, PD[i ≥ 1] → 4 KiB PTs for user memory.
 */
export class WindowTables {
  readonly spec: WindowTablesSpec;
  constructor(spec: WindowTablesSpec) {
    if (spec.base % SPAN.PDPT !== 0) throw new RangeError("window base must be 1 GiB aligned");
    if (spec.memory % SPAN.PD !== 0 || spec.memory < 2 * SPAN.PD) throw new RangeError("memory must be a multiple of 2 MiB and at least 4 MiB");
    const g = spec.gates;
    if (g !== undefined) {
      const first = g.va - spec.base;
      if (!(first % PAGE === 0 && first >= spec.memory && first + g.pages * PAGE <= SPAN.PDPT && Math.floor(first / SPAN.PD) === Math.floor((first + g.pages * PAGE - 1) / SPAN.PD))) {
        throw new RangeError("gate pages must lie in one 2 MiB region of the window above its memory");
      }
    }
    this.spec = spec;
  }

  get root(): number {
    return this.spec.pml4;
  }
  /** Number of PT pages the user memory needs. */
  get ptCount(): number {
    return this.spec.memory / SPAN.PD - 1;
  }
  /** The PDPT entry that maps this window: what a caller's merged root installs (docs/ARCHITECTURE.md §3). */
  get windowEntry(): bigint {
    return tableEntry(this.spec.pd);
  }

  /** Write the whole hierarchy, every user page mapped with `perm`, and the gate pages (tables must be zeroed). */
  init(mem: PtMemory, perm: PagePerm | null = PERM.RW): void {
    const { base, pml4, pdpt, pd, ptBase, gates } = this.spec;
    const ix = indices(base);
    mem.write64(pml4 + ix.pml4 * 8, tableEntry(pdpt));
    mem.write64(pdpt + ix.pdpt * 8, this.windowEntry);
    mem.write64(pd, supervisorLargePage(base));
    for (let i = 0; i < this.ptCount; i++) {
      const pt = ptBase + i * PAGE;
      mem.write64(pd + (i + 1) * 8, tableEntry(pt));
      if (perm) {
        const va0 = base + (i + 1) * SPAN.PD;
        if (mem.write64Parts) writeUserPtParts(mem.write64Parts.bind(mem), pt, va0, perm);
        else for (let j = 0; j < ENTRIES; j++) mem.write64(pt + j * 8, userPte(va0 + j * PAGE, perm));
      }
    }
    if (gates !== undefined) {
      for (let i = 0; i < gates.pages; i++) mem.write64(gates.pt + (indices(gates.va).pt + i) * 8, userPte(gates.page, PERM.RX));
      this.setGates(mem, true);
    }
  }

  /** Map the gate pages (the PD entry of their PT, user and read-only) or unmap them; the PT stays. */
  setGates(mem: PtMemory, mapped: boolean): void {
    const { pd, gates } = this.spec;
    if (gates === undefined) throw new RangeError("this window has no gate pages");
    mem.write64(pd + indices(gates.va).pd * 8, mapped ? tableEntry(gates.pt, PTE.P | PTE.US | PTE.A) : 0n);
  }

  /** GPA of the PTE that maps user address `va`. */
  pteAddress(va: number): number {
    const { base, memory, ptBase } = this.spec;
    if (va < base + SPAN.PD || va >= base + memory) throw new RangeError(`0x${va.toString(16)} is not user memory of this window`);
    const page = Math.floor((va - base - SPAN.PD) / PAGE);
    return ptBase + page * 8;
  }

  /**
   * Map [va, va+length) with `perm`, or unmap it (`null`). Page-granular: every page the range
   * touches; an empty range touches none. Throws RangeError before writing anything unless the
   * whole range is user memory of this window, so a refused call leaves no half-applied change.
   */
  setPages(mem: PtMemory, va: number, length: number, perm: PagePerm | null): void {
    if (!(Number.isFinite(va) && Number.isFinite(length) && length >= 0)) throw new RangeError(`setPages: range 0x${va.toString(16)}+${length} is not a range`);
    if (length === 0) return;
    const start = Math.floor(va / PAGE) * PAGE;
    const end = Math.ceil((va + length) / PAGE) * PAGE;
    this.pteAddress(start); // user memory is contiguous: both ends inside means every page is
    this.pteAddress(end - PAGE);
    for (let p = start; p < end; p += PAGE) mem.write64(this.pteAddress(p), perm ? userPte(p, perm) : 0n);
  }

  /**
   * Copy this window's PD to the page `pd` with NX set on every user entry (the runtime area
   * stays executable) and without the gate pages. A caller's merged root maps its own window
   * through such a copy: while a remote runs, caller code is data only, so a jump into it faults
   * and the VMM sees a callback, and a call of a caller's gate faults as before gates were mapped.
   */
  writeNoExecPd(mem: PtMemory, pd: number): void {
    mem.write64(pd, mem.read64(this.spec.pd));
    for (let i = 1; i < ENTRIES; i++) {
      const e = i <= this.ptCount ? mem.read64(this.spec.pd + i * 8) | PTE.NX : 0n;
      if (e !== 0n || mem.read64(pd + i * 8) !== 0n) mem.write64(pd + i * 8, e);
    }
  }

  /** Permissions of the page holding `va`, or null when not present. */
  getPage(mem: PtMemory, va: number): PagePerm | null {
    const e = mem.read64(this.pteAddress(va));
    if (!(e & PTE.P)) return null;
    return { write: (e & PTE.RW) !== 0n, exec: (e & PTE.NX) === 0n };
  }
}

/**
 * A second root (PML4 + PDPT pages) for the same machine: PML4[0] → its own PDPT whose entries
 * are given per window. Used for the merged and loan roots of IPRE (docs/ARCHITECTURE.md §3).
 */
export function writeRoot(mem: PtMemory, pml4: number, pdpt: number, windows: ReadonlyMap<number, bigint>): void {
  mem.write64(pml4, tableEntry(pdpt));
  for (let w = 0; w < ENTRIES; w++) {
    const e = windows.get(w) ?? 0n;
    if (e !== 0n || mem.read64(pdpt + w * 8) !== 0n) mem.write64(pdpt + w * 8, e);
  }
}

/** A read-only, no-execute view of a window entry (the paper's data loan). */
export function loanEntry(windowEntry: bigint): bigint {
  return (windowEntry & ~PTE.RW) | PTE.NX;
}
