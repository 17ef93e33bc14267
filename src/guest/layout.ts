/**
 * The guest address-space layout, shared by the VMM, the runtime and `guests/ipre.h`.
 *
 * Every machine owns one 1 GiB window k: virtual and physical range [k GiB, (k+1) GiB), identity
 * mapped (VA = GPA). A window is one PDPT entry under PML4[0] (docs/ARCHITECTURE.md §3).
 *
 *   window base + 0           runtime area (2 MiB, supervisor only): GDT/IDT/TSS, stubs,
 *                             stacks, mailbox, page tables
 *   window base + 2 MiB       user memory (ELF images link at base + 4 MiB), up to `memory`
 *   window base + 1 GiB - 2 MiB   trap region, never mapped: hostcall gates, exit and return traps
 */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const PAGE_SIZE = 4096;
export const WINDOW_SIZE = GiB;
/** Largest window index (a window must lie below the 47-bit user address limit, PML4[0] covers 512 GiB). */
export const MAX_WINDOW = 511;

/** Runtime area at the start of every window. */
export const RUNTIME_SIZE = 2 * MiB;
/** First user byte of a window (offset). */
export const USER_OFFSET = RUNTIME_SIZE;
/** Where example ELFs link, relative to their window base. */
export const ELF_LINK_OFFSET = 4 * MiB;

/** Trap region (offset in window): never mapped, so any access faults into the VMM. */
export const TRAP_REGION_OFFSET = WINDOW_SIZE - 2 * MiB; // 0x3FE00000
/** Hostcall gate n lives at window base + HOSTCALL_GATE_OFFSET + n * HOSTCALL_GATE_STRIDE. */
export const HOSTCALL_GATE_OFFSET = TRAP_REGION_OFFSET;
export const HOSTCALL_GATE_STRIDE = 16;
export const HOSTCALL_GATE_COUNT = 4096;
/** The last gate is reserved for `ipre_print(const char *s, unsigned long len)` (guests/ipre.h). */
export const HOSTCALL_PRINT = HOSTCALL_GATE_COUNT - 1;
/** A vmcall's return address: returning to it ends the call. */
export const EXIT_TRAP_OFFSET = WINDOW_SIZE - 4096; // 0x3FFFF000
/** Return address installed for remote calls made from this window (IPRE return trap). */
export const RETURN_TRAP_OFFSET = WINDOW_SIZE - 2 * 4096; // 0x3FFFE000

/** Default and maximum guest memory (runtime area included). */
export const DEFAULT_MEMORY = 32 * MiB;
export const MAX_MEMORY = 464 * MiB;

export function windowBase(window: number): number {
  return window * WINDOW_SIZE;
}

/**
 * Offsets inside the runtime area (window base + offset). Everything here is supervisor-only.
 * Page tables take the second MiB: PML4, PDPT, PD, a pool of extra roots (PML4+PDPT+PD triples
 * for IPRE merged/loan roots), then the PTs of user memory, one per 2 MiB.
 */
export const RT = {
  GDT: 0x0000,
  IDT: 0x1000,
  TSS: 0x2000,
  /** The PT of the trap region's 2 MiB (PD[511]): maps the hostcall gate pages (docs/ARCHITECTURE.md §4). */
  GATE_PT: 0xf000,
  /** The assembled runtime (guests/runtime/runtime.S): stubs and the host mailbox. */
  CODE: 0x10000,
  /** IST1: every exception vector; the parked vCPU's frame lives at its top. */
  IST1_TOP: 0x24000,
  /** IST2: double fault, NMI, machine check. */
  IST2_TOP: 0x26000,
  /** The IPRE fast path's tables and frame (src/engine/fastpath.ts; runtime.S `fp_*`). */
  FAST: 0x30000,
  FAST_SIZE: 0x3000,
  PML4: 0x100000,
  PDPT: 0x101000,
  PD: 0x102000,
  /** Extra roots: (PML4, PDPT, PD) page triples. */
  ROOT_POOL: 0x103000,
  ROOT_POOL_ROOTS: 7,
  PT_BASE: 0x118000,
  PT_END: 0x200000,
} as const;

/**
 * The exception frame every stub leaves on IST1 (error code normalised to always present):
 * offsets from window base + RT.IST1_TOP - FRAME_SIZE.
 */
export const FRAME = { error: 0, rip: 8, cs: 16, rflags: 24, rsp: 32, ss: 40 } as const;
export const FRAME_SIZE = 48;

/**
 * I/O ports of the runtime's exits: vector v exits on PORT.VECTOR_BASE + v; a ring-3 `syscall`
 * on PORT.SYSCALL on hardware KVM, with the same frame on IST1 (on PVM it is a #PF at LSTAR);
 * a hostcall gate's ring-3 `out` on PORT.HOSTCALL, the one port the TSS I/O bitmap allows
 * (docs/ARCHITECTURE.md §4).
 */
export const PORT = { BOOT: 0xd0, SERVICE: 0xd1, SYSCALL: 0xd2, HOSTCALL: 0xd3, VECTOR_BASE: 0xe0 } as const;
