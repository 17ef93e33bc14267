/**
 * The TypeScript twin of guests/runtime/runtime.S: where the parked vCPU's exception frame lies,
 * the mailbox fields the runtime's `resume` reads, and the continuations the host points RIP at
 * (docs/ARCHITECTURE.md §4). Whoever edits runtime.S edits this file: every offset here comes
 * from the assembled symbols (src/guest/runtime.generated.ts) or src/guest/layout.ts.
 *
 * Invariant: while parked (stopped after a stub's `out`), RSP = IST1_TOP - FRAME_SIZE and the
 * frame there is [error, rip, cs, rflags, rsp, ss]; all general registers hold guest values.
 */
import { EXIT } from "../kvm/abi.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import { FRAME, FRAME_SIZE, HOSTCALL_GATE_STRIDE, PORT, RT } from "../guest/layout.ts";
import { MAILBOX_PT_WRITES, runtimeSymbol, type RuntimeSymbol } from "../guest/runtime.ts";
import { SELECTOR } from "../x86/descriptors.ts";
import { RFLAGS_RESERVED } from "../x86/registers.ts";
import type { PtMemory } from "../x86/paging.ts";
import type { GuestMemory } from "./memory.ts";

/** Offset (from the window base) of the parked frame on IST1. */
const FRAME_OFFSET = RT.IST1_TOP - FRAME_SIZE;

/** u32 indices (offset >> 2) into guest memory of the parked frame's fields. */
export const FRAME_AT = {
  error: (FRAME_OFFSET + FRAME.error) >> 2,
  rip: (FRAME_OFFSET + FRAME.rip) >> 2,
  cs: (FRAME_OFFSET + FRAME.cs) >> 2,
  rflags: (FRAME_OFFSET + FRAME.rflags) >> 2,
  rsp: (FRAME_OFFSET + FRAME.rsp) >> 2,
  ss: (FRAME_OFFSET + FRAME.ss) >> 2,
} as const;

const at = (s: RuntimeSymbol): number => (RT.CODE + runtimeSymbol(s)) >> 2;
/** u32 indices of the mailbox fields (runtime.S, `mailbox`). */
export const MB = {
  /** Nonzero: some field below is set (the fast path checks only this). */
  pending: at("mb_pending"),
  cr3: at("mb_cr3"),
  fsbaseSet: at("mb_fsbase_set"),
  fsbase: at("mb_fsbase"),
  service: at("mb_service"),
  ptCount: at("mb_pt_count"),
  ptWrites: at("mb_pt_writes"),
} as const;

/** Offsets from the window base of the runtime's entry points and continuations. */
export const ENTRY = {
  boot: RT.CODE + runtimeSymbol("boot"),
  resumeIret: RT.CODE + runtimeSymbol("resume_iret"),
  resumeCr3: RT.CODE + runtimeSymbol("resume_cr3"),
  park: RT.CODE + runtimeSymbol("park"),
  parkAlt: RT.CODE + runtimeSymbol("park_alt"),
  /** The page of hostcall gates (ring 3: `out PORT.HOSTCALL, al; ret` every 16 bytes), mapped at every gate page. */
  gates: RT.CODE + runtimeSymbol("hostcall_gates"),
  /** MSR_LSTAR's target: a ring-3 `syscall` builds the parked frame and exits on PORT.SYSCALL. */
  syscall: RT.CODE + runtimeSymbol("syscall_entry"),
  /** RSP of the parked vCPU (the frame), and of a continuation that starts at the frame's RIP slot. */
  frameSp: FRAME_OFFSET,
  ripSlot: FRAME_OFFSET + FRAME.rip,
} as const;

/** Write the iret frame: resume in ring 3 at rip with rsp. */
export function writeFrame(mem: GuestMemory, rip: number, rsp: number): void {
  mem.setU64At(FRAME_AT.error, 0);
  mem.setU64At(FRAME_AT.rip, rip);
  mem.setU64At(FRAME_AT.cs, SELECTOR.USER_CODE);
  mem.setU64At(FRAME_AT.rflags, RFLAGS_RESERVED);
  mem.setU64At(FRAME_AT.rsp, rsp);
  mem.setU64At(FRAME_AT.ss, SELECTOR.USER_DATA);
}

/** Set a mailbox field for the stub's next resume, and the flag its fast path checks. */
export function setMailbox(mem: GuestMemory, index: number, value: number): void {
  mem.setU64At(index, value);
  mem.setU64At(MB.pending, 1);
}

/** Have the next resume load FSBASE (the thread pointer of guest TLS). */
export function loadFsBase(mem: GuestMemory, value: number): void {
  mem.setU64At(MB.fsbase, value);
  setMailbox(mem, MB.fsbaseSet, 1);
}

/** An empty mailbox (a fork's copy may hold its parent's pending work). */
export function clearMailbox(mem: GuestMemory): void {
  for (const i of [MB.pending, MB.cr3, MB.service, MB.ptCount, MB.fsbaseSet]) mem.setU64At(i, 0);
}

/**
 * Continue straight at `iretq` when the mailbox is empty (fewer ring-0 instructions per exit),
 * else through `jmp resume` where the stub exited, which applies it.
 */
export function resumeFast(mem: GuestMemory, vcpu: Vcpu, base: number): void {
  if (mem.u32[MB.pending] !== 0) return;
  vcpu.setReg("rsp", base + ENTRY.ripSlot);
  vcpu.setReg("rip", base + ENTRY.resumeIret);
}

/**
 * Continue with a CR3 load and the FSBASE of the code that runs next (an IPRE merge or unmerge),
 * through `resume_cr3` when the mailbox is empty: a value a guest wrote with `wrfsbase` never
 * survives a switch into the other side's code. The root goes in R11, a scratch register of the
 * SysV ABI at every function entry and return, which is where IPRE's traps happen.
 */
export function resumeWithCr3(mem: GuestMemory, vcpu: Vcpu, base: number, root: number, fsBase: number): void {
  if (mem.u32[MB.pending] !== 0) {
    if (mem.getU64At(MB.ptCount) !== 0 || mem.getU64At(MB.service) !== 0) {
      setMailbox(mem, MB.cr3, root); // other mailbox work is queued: the general path does all
      loadFsBase(mem, fsBase);
      return;
    }
    // Only a CR3 and/or FSBASE load is queued (e.g. the unmerge after a direct call), which this
    // switch replaces with its own: drop it and take the fast continuation.
    mem.setU64At(MB.cr3, 0);
    mem.setU64At(MB.fsbaseSet, 0);
    mem.setU64At(MB.pending, 0);
  }
  mem.setU64At(MB.fsbase, fsBase); // resume_cr3 loads it (mb_fsbase_set stays 0)
  vcpu.setReg("r11", root);
  vcpu.setReg("rsp", base + ENTRY.ripSlot);
  vcpu.setReg("rip", base + ENTRY.resumeCr3);
}

/** Bytes of a gate's `out PORT.HOSTCALL, al` (runtime.S, `hostcall_gates`); its `ret` follows. */
export const GATE_OUT_SIZE = 2;

/**
 * Whether the vCPU stopped at a ring-3 `out` on PORT.HOSTCALL (a hostcall gate's, or a forged
 * one) and has not run since: not parked (ring 3, no frame on IST1), and on hardware KVM the
 * next KVM_RUN completes the `out` by skipping it unless RIP changed (docs/ARCHITECTURE.md §4).
 */
export function atGate(vcpu: Vcpu): boolean {
  return vcpu.exitReason === EXIT.IO && vcpu.ioPort === PORT.HOSTCALL;
}

/**
 * The `ret` of the gate whose `out` exited at `rip`: hardware KVM reports the `out` itself (it
 * skips it on the next KVM_RUN), PVM the instruction after it (it emulated the `out`). Gates
 * are HOSTCALL_GATE_STRIDE-aligned, so both give the same gate.
 */
export function gateReturn(rip: number): number {
  return rip - (rip % HOSTCALL_GATE_STRIDE) + GATE_OUT_SIZE;
}

/**
 * Where a service run that only exits should start: `park` or `park_alt`, never the `out` that
 * just exited (hardware KVM completes a PIO exit by skipping that `out`: runtime.S, `park`).
 */
export function parkEntry(base: number, rip: number): number {
  return rip === base + ENTRY.park ? base + ENTRY.parkAlt : base + ENTRY.park;
}

/**
 * Page-table writes after boot: queued, and applied by the runtime in service runs (so that a
 * shadow-paging hypervisor sees them, docs/ARCHITECTURE.md §4). Before boot they go straight to
 * memory.
 */
export class PageTableQueue {
  readonly #writes = new Map<number, bigint>();
  /** Whether the vCPU has run: from then on writes are queued. */
  #booted = false;

  constructor(readonly mem: GuestMemory) {}

  /** Page-table memory for live tables: reads see queued writes. */
  readonly pt: PtMemory = {
    read64: (gpa) => this.#writes.get(gpa) ?? this.mem.direct.read64(gpa),
    write64: (gpa, v) => {
      if (!this.#booted) this.mem.direct.write64(gpa, v);
      else this.#writes.set(gpa, v);
    },
  };

  /** The vCPU booted: queue writes from now on. */
  booted(): void {
    this.#booted = true;
  }
  /** The runtime area is being rewritten for a reboot: write straight to memory until it booted. */
  rebooting(): void {
    this.#booted = false;
  }

  /**
   * Move up to MAILBOX_PT_WRITES queued writes into the mailbox, for one service run; the number
   * still queued afterwards. The last batch also asks for a CR3 load of `root` (a TLB flush).
   */
  stageBatch(root: number): number {
    const mem = this.mem;
    let n = 0;
    for (const [gpa, v] of this.#writes) {
      if (n === MAILBOX_PT_WRITES) break;
      const w = MB.ptWrites + n * 4;
      mem.setU64At(w, gpa);
      mem.u32[w + 2] = Number(v & 0xffffffffn);
      mem.u32[w + 3] = Number(v >> 32n);
      this.#writes.delete(gpa);
      n++;
    }
    mem.setU64At(MB.ptCount, n);
    if (this.#writes.size === 0) setMailbox(mem, MB.cr3, root);
    setMailbox(mem, MB.service, 1);
    return this.#writes.size;
  }
}
