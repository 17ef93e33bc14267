/**
 * The memory side of a Linux program's syscall layer (syscalls.ts delegates brk, anonymous mmap,
 * munmap, mremap, mprotect and madvise to the LinuxMemory of its process).
 *
 * Layout: [program end, brk) is the heap, growing up; anonymous mappings are carved top-down from
 * the page below the stack guard (mmapTop) down to mmapLow; the gap [brk, mmapLow) is what both
 * grow into (ENOMEM when they meet). Inside [mmapLow, mmapTop) a sorted, coalesced free list holds
 * the unmapped ranges: mmap takes the highest free range that fits (first fit, top-down), else
 * extends the area down; munmap gives back any page-aligned range (a whole mapping, part of one,
 * or nothing mapped at all: 0, as Linux), and a free range at the bottom of the area goes back to
 * the gap. mremap grows in place when the pages above are free, else moves (MREMAP_MAYMOVE) and
 * frees the old range. New memory is zeroed, as Linux guarantees.
 *
 * Permissions are real: mmap's prot and mprotect write the page-table entries (PROT_NONE: not
 * present; PROT_READ: read-only; PROT_WRITE: read-write; PROT_EXEC: NX clear), and the runtime of
 * every VM that may cache this window's tables applies them (shadow paging sees only writes a
 * guest makes, docs/ARCHITECTURE.md §4): this machine's own, and each connected caller's, through
 * its merged root (the only root that maps a remote's tables), ending with a CR3 load (TLB flush).
 * munmap writes no entry (no exit): unmapped pages stay accessible until reused, and protected
 * ones go back to RW. Pages whose permission differs from the loaded program's default (RW; the
 * ELF segments' own) are tracked, so a snapshot carries them and reset()/fork() restore them.
 *
 * Shared with other threads (Machine.share, src/ipre/share.ts): the attached Remotes' callers
 * cache the tables in VMs this thread cannot run, so while Remotes are attached permissions are
 * frozen (a change by mprotect or a non-RW mmap is EPERM; munmap keeps protected pages reserved),
 * and an attached Remote's own layer changes nothing: brk reports the owner's break (published in
 * the share's SharedArrayBuffer), mmap and growing mremap are ENOMEM, munmap keeps the pages
 * reserved, mprotect is EPERM. Only the owner's program grows its memory.
 */
import { PAGE_SIZE } from "../guest/layout.ts";
import type { Cpu, Space } from "../engine/owners.ts";
import { flushPageTables } from "../engine/service.ts";
import { PERM, type PagePerm, userPte } from "../x86/paging.ts";

/** mmap/mprotect protection bits. */
export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
const E = { EPERM: 1, ENOMEM: 12, EINVAL: 22 } as const;
const MAP_FIXED = 0x10;
const MREMAP_MAYMOVE = 1;
const MADV_DONTNEED = 4;
/** Canonical protection of a read-write page: the default of user memory. */
const RW = PROT.READ | PROT.WRITE;

/** What a snapshot keeps of a program's memory bookkeeping (LinuxState.memory). */
export interface MemoryState {
  readonly brk: number;
  /** Bottom of the mmap area [mmapLow, mmapTop). */
  readonly mmapLow: number;
  /** Unmapped ranges [start, end) inside the mmap area, sorted, coalesced. */
  readonly free: readonly (readonly [number, number])[];
  /** Runs [start, end, prot] of pages whose protection differs from the default. */
  readonly prot: readonly (readonly [number, number, number])[];
}

const pageUp = (n: number) => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/** What a page gets for PROT bits: x86 has no write-only or execute-only page. */
function permOf(prot: number): PagePerm | null {
  if ((prot & 7) === 0) return null;
  const exec = (prot & PROT.EXEC) !== 0;
  if ((prot & PROT.WRITE) !== 0) return exec ? PERM.RWX : PERM.RW;
  return exec ? PERM.RX : PERM.R;
}
/** Canonical PROT bits of a page permission (0, R, RW, RX or RWX). */
function protOf(perm: PagePerm | null): number {
  return perm === null ? 0 : PROT.READ | (perm.write ? PROT.WRITE : 0) | (perm.exec ? PROT.EXEC : 0);
}

/**
 * Write page-table entries of `owner`'s window in every VM that may cache them: the owner's own
 * (`own`: a machine's Cpu; none for an attached Remote) and each connected caller's, whose runtime
 * reaches the owner's tables only through its merged root; each ends on the root it runs on
 * (inside a call: the call's).
 */
function writeEverywhere(owner: Space, own: Cpu | undefined, writes: [number, bigint][]): void {
  if (writes.length === 0) return;
  const vms = [...owner.callers];
  if (own !== undefined) vms.unshift(own);
  for (const k of vms) {
    if (k.closed) continue;
    const link = k === own ? undefined : k.links.get(owner.window);
    if (k !== own && link === undefined) continue;
    if (link !== undefined && k.activeRoot() !== link.mergedRoot) flushPageTables(k, link.mergedRoot); // a CR3 load only
    for (const [gpa, v] of writes) k.ptq.pt.write64(gpa, v);
    flushPageTables(k, k.activeRoot());
  }
}

export class LinuxMemory {
  /** First heap byte (the page after the program) and the current break. */
  readonly brkStart: number;
  #brk: number;
  /** The mmap area is [mmapLow, mmapTop); mmapTop is the page below the stack guard. */
  readonly mmapTop: number;
  mmapLow: number;
  #free: [number, number][] = [];
  /** Pages whose protection differs from their default (canonical PROT bits), by address. */
  #prot = new Map<number, number>();

  /** `space`: the program's; `cpu`: its own vCPU (a machine's), none in an attached Remote. */
  constructor(readonly space: Space, readonly cpu: Cpu | undefined, programEnd: number) {
    this.brkStart = this.#brk = pageUp(programEnd);
    this.mmapTop = this.mmapLow = space.stackGuard;
    this.#publish();
  }

  get brk(): number {
    return this.space.attached ? this.#ownerBrk() : this.#brk;
  }
  /** Free ranges of the mmap area (a copy). */
  get free(): [number, number][] {
    return this.#free.map(([s, e]) => [s, e]);
  }

  /** Whether page permissions may not change: other threads' VMs cache the tables (see above). */
  #frozen(): boolean {
    return this.space.attached || this.space.attachedRemotes() > 0;
  }
  /** The owner's break, as it publishes it for attached Remotes. */
  #ownerBrk(): number {
    return this.space.shared?.brk() ?? this.#brk;
  }
  #publish(): void {
    if (!this.space.attached) this.space.shared?.publishBrk(this.#brk);
  }

  /** brk(addr): the new break, or the current one (a query, or no room). */
  setBreak(addr: number): number {
    if (this.space.attached) return this.#ownerBrk(); // a query, or a refusal: the break never moves here
    if (addr < this.brkStart || addr > this.mmapLow) return this.#brk; // a query, or no room: unchanged
    if (addr > this.#brk) this.#zero(this.#brk, addr);
    else this.#release(pageUp(addr), pageUp(this.#brk));
    this.#brk = addr;
    this.#publish();
    return addr;
  }

  /** An anonymous mapping of `length` bytes with `prot` (MAP_FIXED at `addr`); its address or -errno. */
  mmap(addr: number, length: number, prot: number, flags: number): number {
    if (length <= 0 || (prot & ~7) !== 0) return -E.EINVAL;
    if (this.space.attached) return -E.ENOMEM;
    const want = protOf(permOf(prot));
    if (want !== RW && this.#frozen()) return -E.EPERM;
    const size = pageUp(length);
    let at: number;
    if ((flags & MAP_FIXED) !== 0) {
      if (addr % PAGE_SIZE !== 0) return -E.EINVAL;
      if (addr < this.brkStart || addr + size > this.mmapTop) return -E.ENOMEM;
      if (this.#frozen() && this.#tracked(addr, addr + size)) return -E.EPERM;
      this.#claim(addr, addr + size);
      at = addr;
    } else {
      at = this.#take(size);
      if (at < 0) return -E.ENOMEM;
    }
    this.#zero(at, at + size);
    this.#setProt(at, at + size, want);
    return at;
  }

  munmap(addr: number, length: number): number {
    if (addr % PAGE_SIZE !== 0 || length <= 0) return -E.EINVAL;
    if (this.space.attached) return 0; // the pages stay reserved (never handed out twice)
    const lo = Math.max(addr, this.mmapLow);
    const hi = Math.min(addr + pageUp(length), this.mmapTop);
    if (lo >= hi) return 0; // nothing of the mmap area (heap, stack, program: left alone)
    if (this.#frozen() && this.#tracked(lo, hi)) return 0; // protected pages stay reserved until unfrozen
    this.#release(lo, hi);
    this.#addFree(lo, hi);
    return 0;
  }

  mremap(old: number, oldSize: number, newSize: number, flags: number): number {
    if (old % PAGE_SIZE !== 0 || newSize <= 0 || (flags & ~MREMAP_MAYMOVE) !== 0) return -E.EINVAL;
    const oldS = pageUp(oldSize);
    const newS = pageUp(newSize);
    if (newS <= oldS) {
      if (newS < oldS) this.munmap(old + newS, oldS - newS);
      return old;
    }
    if (this.space.attached) return -E.ENOMEM;
    const prot = this.#protAt(old);
    const tail = old + oldS;
    const end = old + newS;
    if (old >= this.mmapLow && end <= this.mmapTop && this.#isFree(tail, end)) {
      this.#removeFree(tail, end);
      this.#zero(tail, end);
      if (prot !== RW && !this.#frozen()) this.#setProt(tail, end, prot);
      return old;
    }
    if ((flags & MREMAP_MAYMOVE) === 0) return -E.ENOMEM;
    const to = this.mmap(0, newS, RW, 0);
    if (to < 0) return to;
    const b = this.space.base;
    this.space.mem.u8.copyWithin(to - b, old - b, old - b + oldS);
    this.munmap(old, oldS);
    if (prot !== RW && !this.#frozen()) this.#setProt(to, end - old + to, prot);
    return to;
  }

  mprotect(addr: number, length: number, prot: number): number {
    if (addr % PAGE_SIZE !== 0 || length < 0 || (prot & ~7) !== 0) return -E.EINVAL;
    if (length === 0) return 0;
    if (this.space.attached) return -E.EPERM;
    const end = addr + pageUp(length);
    if (!this.#mapped(addr, end)) return -E.ENOMEM;
    const want = protOf(permOf(prot));
    if (this.#frozen()) {
      for (let p = addr; p < end; p += PAGE_SIZE) if (this.#protAt(p) !== want) return -E.EPERM;
      return 0;
    }
    this.#setProt(addr, end, want);
    return 0;
  }

  madvise(addr: number, length: number, advice: number): number {
    if (addr % PAGE_SIZE !== 0 || length < 0) return -E.EINVAL;
    // MADV_DONTNEED on anonymous memory reads back zeroes afterwards (Linux); other advice is a hint.
    if (advice === MADV_DONTNEED && !this.space.attached) {
      const lo = Math.max(addr, this.mmapLow);
      const hi = Math.min(addr + pageUp(length), this.mmapTop);
      if (lo < hi) this.#zero(lo, hi);
    }
    return 0;
  }

  /** What a snapshot keeps. */
  state(): MemoryState {
    const runs: [number, number, number][] = [];
    for (const [p, prot] of [...this.#prot].sort(([a], [b]) => a - b)) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] === p && last[2] === prot) last[1] = p + PAGE_SIZE;
      else runs.push([p, p + PAGE_SIZE, prot]);
    }
    return { brk: this.#brk, mmapLow: this.mmapLow, free: this.free, prot: runs };
  }

  /**
   * Go back to `s` (reset to a snapshot, a fork starting from one), or without `s` to the default
   * permissions of every tracked page (a reset that drops the program). Page-table entries that
   * differ from the target are rewritten in every VM that caches them.
   */
  restore(s: MemoryState | undefined): void {
    const target = new Map<number, number>();
    for (const [start, end, prot] of s?.prot ?? []) for (let p = start; p < end; p += PAGE_SIZE) target.set(p, prot);
    const writes: [number, bigint][] = [];
    const tables = this.space.tables;
    const pt = this.cpu?.ptq.pt ?? this.space.mem.direct; // queued writes included
    for (const p of new Set([...this.#prot.keys(), ...target.keys()])) {
      const want = target.get(p) ?? this.#base(p);
      if (protOf(tables.getPage(pt, p)) !== want) writes.push([tables.pteAddress(p), this.#pte(p, want)]);
    }
    this.#prot = target;
    if (s !== undefined) {
      this.#brk = s.brk;
      this.mmapLow = s.mmapLow;
      this.#free = s.free.map(([a, b]) => [a, b]);
      this.#publish();
    }
    writeEverywhere(this.space, this.cpu, writes);
  }

  // ---- bookkeeping ----

  /** The highest free range that fits (its top part), else below the area; -1 when the gap is too small. */
  #take(size: number): number {
    for (let i = this.#free.length - 1; i >= 0; i--) {
      const r = this.#free[i];
      if (r === undefined) continue;
      if (r[1] - r[0] < size) continue;
      const at = r[1] - size;
      if (at === r[0]) this.#free.splice(i, 1);
      else r[1] = at;
      return at;
    }
    const at = this.mmapLow - size;
    if (at < this.#brk) return -1;
    this.mmapLow = at;
    return at;
  }

  /** A MAP_FIXED range becomes mapped: out of the free list, and the area grows down to it. */
  #claim(lo: number, hi: number): void {
    const low = Math.max(lo, pageUp(this.#brk));
    if (low < this.mmapLow && hi > low) {
      if (hi < this.mmapLow) this.#free.unshift([hi, this.mmapLow]);
      this.mmapLow = low;
    }
    this.#removeFree(lo, hi);
  }

  #addFree(lo: number, hi: number): void {
    const out: [number, number][] = [];
    let cur: [number, number] = [lo, hi];
    let placed = false;
    for (const r of this.#free) {
      if (r[1] < cur[0]) out.push(r);
      else if (r[0] > cur[1]) {
        if (!placed) (out.push(cur), (placed = true));
        out.push(r);
      } else cur = [Math.min(cur[0], r[0]), Math.max(cur[1], r[1])];
    }
    if (!placed) out.push(cur);
    // A free range at the bottom of the area goes back to the gap.
    for (;;) {
      const low = out[0];
      if (low === undefined || low[0] > this.mmapLow) break;
      out.shift();
      this.mmapLow = Math.max(this.mmapLow, low[1]);
    }
    this.#free = out;
  }

  #removeFree(lo: number, hi: number): void {
    const out: [number, number][] = [];
    for (const [s, e] of this.#free) {
      if (e <= lo || s >= hi) out.push([s, e]);
      else {
        if (s < lo) out.push([s, lo]);
        if (e > hi) out.push([hi, e]);
      }
    }
    this.#free = out;
  }

  #isFree(lo: number, hi: number): boolean {
    return this.#free.some(([s, e]) => s <= lo && hi <= e);
  }

  /** Whether [lo, hi) is mapped user memory: not the gap, a free range or the stack guard. */
  #mapped(lo: number, hi: number): boolean {
    const c = this.space;
    if (lo < c.userStart || hi > c.memoryEnd) return false;
    if (lo < c.stackGuard + PAGE_SIZE && hi > c.stackGuard) return false;
    if (lo < this.mmapLow && hi > pageUp(this.#brk)) return false;
    return !this.#free.some(([s, e]) => lo < e && hi > s);
  }

  #tracked(lo: number, hi: number): boolean {
    for (const p of this.#prot.keys()) if (p >= lo && p < hi) return true;
    return false;
  }

  // ---- permissions ----

  /** The protection a page has by default: RW, or its ELF segment's (as Machine.load sets it). */
  #base(page: number): number {
    let prot: number = RW;
    for (const s of this.space.program?.segments ?? []) {
      if (page + PAGE_SIZE > s.vaddr && page < s.vaddr + s.memsz) prot = s.executable ? PROT.READ | PROT.EXEC : s.writable ? RW : PROT.READ;
    }
    return prot;
  }
  #protAt(page: number): number {
    return this.#prot.get(page) ?? this.#base(page);
  }
  #pte(page: number, prot: number): bigint {
    const perm = permOf(prot);
    return perm === null ? 0n : userPte(page, perm);
  }

  /** Give [lo, hi) protection `prot`, writing only the entries that change. */
  #setProt(lo: number, hi: number, prot: number): void {
    if (prot === RW && !this.#inProgram(lo, hi) && !this.#tracked(lo, hi)) return; // already RW: no exit
    const writes: [number, bigint][] = [];
    for (let p = lo; p < hi; p += PAGE_SIZE) {
      const base = this.#base(p);
      if ((this.#prot.get(p) ?? base) === prot) continue;
      if (prot === base) this.#prot.delete(p);
      else this.#prot.set(p, prot);
      writes.push([this.space.tables.pteAddress(p), this.#pte(p, prot)]);
    }
    writeEverywhere(this.space, this.cpu, writes);
  }

  /** Pages of [lo, hi) that leave the program go back to their default protection. */
  #release(lo: number, hi: number): void {
    if (this.#prot.size === 0 || lo >= hi || this.#frozen()) return;
    const pages = [...this.#prot.keys()].filter((p) => p >= lo && p < hi);
    const writes: [number, bigint][] = pages.map((p) => {
      this.#prot.delete(p);
      return [this.space.tables.pteAddress(p), this.#pte(p, this.#base(p))];
    });
    writeEverywhere(this.space, this.cpu, writes);
  }

  #inProgram(lo: number, hi: number): boolean {
    return (this.space.program?.segments ?? []).some((s) => lo < s.vaddr + s.memsz && hi > s.vaddr);
  }

  #zero(from: number, to: number): void {
    this.space.mem.u8.fill(0, from - this.space.base, to - this.space.base);
  }
}
