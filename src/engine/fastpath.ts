/**
 * The IPRE fast path's tables (docs/ARCHITECTURE.md §3, "the fast path"): what the runtime's
 * ring-0 #PF handler (guests/runtime/runtime.S, `fast_pf`) reads to enter a remote and return
 * from it without an exit, and the frame it leaves. The host writes the tables while the vCPU is
 * parked: they are plain supervisor-only data in the caller's runtime area (RT.FAST), not page
 * tables, so a host write is seen as it is on every flavour.
 *
 * The entry table lists, for each connection on the fast path, the allowed entries of its remote
 * *while that remote is free*: a remote that is busy with a call, must be reset or is closed has
 * no entry, so the handler's one comparison is the allow-list, the busy rule and the state check
 * at once, and whatever it does not find goes through the host's path, which gives today's typed
 * errors. The handler also takes only the outermost call (no IPRE frame yet on this vCPU): nested
 * calls, callbacks and everything inside a remote that needs the host go through the host.
 *
 * The handler leaves the return address on the stack (the remote's `ret` faults fetching it: caller
 * memory is no-execute in the merged root). When any exit happens while the handler's frame is
 * live (a hostcall or syscall of the remote, a fault, a timeout, a return the handler does not
 * take), the exit loop first *adopts* it (frames.ts adoptFastFrame): the frame becomes a host frame,
 * the remote is occupied, the return trap replaces the return address, and from there the call
 * is exactly a host-path call (src/engine/frames.ts).
 */
import { IpreError } from "../errors.ts";
import { RT } from "../guest/layout.ts";
import { runtimeSymbol, type RuntimeSymbol } from "../guest/runtime.ts";
import type { GuestMemory } from "./memory.ts";

const off = (s: RuntimeSymbol): number => runtimeSymbol(s);
if (off("fp_area") !== RT.FAST) throw new IpreError(`runtime.S places the fast-path area at 0x${off("fp_area").toString(16)}, layout.ts RT.FAST says 0x${RT.FAST.toString(16)}`);

/** u32 indices (window offset >> 2) of the fast-path area's words. */
const FP = {
  rsp: off("fp_rsp") >> 2,
  normalRoot: off("fp_normal_root") >> 2,
  fsbase: off("fp_fsbase") >> 2,
  userLo: off("fp_user_lo") >> 2,
  userSpan: off("fp_user_span") >> 2,
  userLo8: off("fp_user_lo8") >> 2,
  callerBase: off("fp_caller_base") >> 2,
} as const;
/** The four arrays of u64 indexed by slot: entry address, merged root, FSBASE, window. */
const ENTRIES = off("fp_entries");
const ROOTS = off("fp_entry_roots");
const FSBASES = off("fp_entry_fsbases");
const WINDOWS = off("fp_entry_windows");
const SLOTS = (ROOTS - ENTRIES) / 8;

/**
 * u32 index of the low half of fp_rsp, which the exit loop checks after every KVM_RUN (exits.ts):
 * 0 no IPRE frame and entries listed, 1 nothing for the handler (the host has frames, or no entry
 * is listed: its #PF stub then exits after three instructions), anything else the live frame's
 * RSP after the remote's `ret`, entry RSP + 8 (an entry RSP is user memory, at least 2 MiB above a
 * 1 GiB boundary, so its low half is never 0 or 1).
 */
export const FAST_LIVE_AT = FP.rsp;
/** fp_rsp when the handler has nothing to do: no RSP, so it neither enters nor returns. */
const IDLE = 1;

/**
 * The handler's hash of an entry address: the top 8 bits of (its low 32 bits × 0x9e3779b1) mod
 * 2^32 (`imul eax, r11d, 0x9e3779b1; shr eax, 24`), Fibonacci hashing of the offset in the window.
 */
export function entrySlot(address: number): number {
  return Math.imul(address >>> 0, 0x9e3779b1) >>> 24;
}
if (SLOTS !== 256) throw new IpreError(`runtime.S has ${SLOTS} fast-path entry slots; entrySlot() hashes to 256`);

/** How a connection's calls from caller code are made: in the guest (0 exits) or through the host (2). */
export type CallPath = "fast" | "trap";
/** The path of connections whose options choose none (Machine.callPath). */
export const callPathDefault: { value: CallPath } = { value: "fast" };

/** What the table needs to know of one connection. */
export interface FastLink {
  readonly window: number;
  readonly mergedRoot: number;
  readonly allow: ReadonlySet<number>;
}

/** Where the caller's own window puts things the handler checks. */
export interface FastCaller {
  readonly base: number;
  readonly userStart: number;
  readonly memoryEnd: number;
}

/** The fast-path area of one Cpu (owned by it: owners.ts). */
export class FastTable {
  /** Entry address of each slot this table filled, and its window (for messages and withdrawal). */
  readonly #slots = new Map<number, { address: number; window: number }>();
  /** The host's IPRE frames on this vCPU. */
  #hostDepth = 0;

  /** Clears the area (a fork's memory holds its parent's) and writes the caller's constants. */
  constructor(readonly mem: GuestMemory, caller: FastCaller, normalRoot: number) {
    mem.u8.fill(0, RT.FAST, RT.FAST + RT.FAST_SIZE);
    mem.setU64At(FP.normalRoot, normalRoot);
    // An entry RSP is 8-aligned caller user memory with room for the return address: the
    // handler checks RSP - userStart <= span unsigned, so userStart must be 8-aligned.
    if (caller.userStart % 8 !== 0) throw new IpreError(`the fast path needs 8-aligned user memory, not 0x${caller.userStart.toString(16)}`);
    mem.setU64At(FP.userLo, caller.userStart);
    mem.setU64At(FP.userSpan, caller.memoryEnd - 8 - caller.userStart);
    mem.setU64At(FP.userLo8, caller.userStart + 8);
    mem.setU64At(FP.callerBase, caller.base);
    this.#idleOrReady();
  }

  /** Whether the handler's frame is live (a call the host has not seen). */
  get live(): boolean {
    return (this.mem.u32[FP.rsp] ?? 0) > IDLE;
  }
  /** The host's frame count changed: the handler takes calls only when there is none. */
  setHostDepth(depth: number): void {
    this.#hostDepth = depth;
    this.#idleOrReady();
  }
  /** fp_rsp outside a live frame: ready (0) when entries are listed and the host has no frame. */
  #idleOrReady(): void {
    this.mem.setU64At(FP.rsp, this.#hostDepth > 0 || this.#slots.size === 0 ? IDLE : 0);
  }
  /**
   * RSP at the entry of the handler's live frame (where the return address is), for the host to
   * adopt it (which then sets its depth). The handler stores no slot (a memory write costs most
   * on PVM): the merged root in CR3 names the remote (frames.ts adoptFastFrame), or listedWindow.
   */
  liveRsp(): number {
    return this.mem.getU64At(FP.rsp) - 8;
  }
  /** The window of the remote whose allowed entry `address` is listed, if it is. */
  listedWindow(address: number): number | undefined {
    const held = this.#slots.get(entrySlot(address));
    return held?.address === address ? held.window : undefined;
  }
  /** The host took over the live frame (or finished its return): no frame of the handler's any more. */
  clearLive(): void {
    this.#idleOrReady();
  }
  setNormalRoot(root: number): void {
    this.mem.setU64At(FP.normalRoot, root);
  }
  /** FSBASE of the caller's code: what the handler loads on the way back. */
  setFsBase(value: number): void {
    this.mem.setU64At(FP.fsbase, value);
  }

  /**
   * List `link`'s allowed entries (the remote is free and the connection takes the fast path),
   * with the remote's FSBASE. An entry whose slot another entry holds stays on the host's path.
   */
  publish(link: FastLink, fsBase: number): void {
    for (const address of link.allow) {
      const slot = entrySlot(address);
      const held = this.#slots.get(slot);
      if (held !== undefined && held.address !== address) continue;
      this.#slots.set(slot, { address, window: link.window });
      this.#write(ROOTS + slot * 8, link.mergedRoot);
      this.#write(FSBASES + slot * 8, fsBase);
      this.#write(WINDOWS + slot * 8, link.window);
      this.#write(ENTRIES + slot * 8, address); // last: a slot is live once its address matches
    }
    this.#idleOrReady();
  }
  /** Remove every entry of the remote in `window` (busy, to be reset, closed, disconnected, or on the host's path). */
  withdraw(window: number): void {
    for (const [slot, held] of this.#slots) {
      if (held.window !== window) continue;
      this.#write(ENTRIES + slot * 8, 0);
      this.#slots.delete(slot);
    }
    this.#idleOrReady();
  }
  /** Whether `address` is listed (tests, doctor). */
  listed(address: number): boolean {
    return this.listedWindow(address) !== undefined;
  }

  #write(offset: number, value: number): void {
    this.mem.setU64At(offset >> 2, value);
  }
}
