/**
 * Guest pointers seen from the host, checked like the guest's own accesses: the host walks the
 * page tables the vCPU runs on at that moment (its own window; a remote's only while that
 * remote's code runs inside a call; a loaned window read-only). docs/ARCHITECTURE.md §3.
 */
import { GuestMemoryError, hex } from "../errors.ts";
import { PAGE_SIZE, WINDOW_SIZE } from "../guest/layout.ts";
import { ADDR_MASK, indices, PTE, SPAN } from "../x86/paging.ts";
import type { Cpu, Space } from "./owners.ts";

/** Highest user address + 1 (47-bit canonical lower half). */
const USER_LIMIT = 2 ** 47;

/** Whose code runs now on this vCPU, for messages. */
function runningCode(cpu: Cpu): string {
  const top = cpu.stack.top();
  return top?.kind === "call" ? `code of ${top.link.remote.name} (inside a remote call from ${cpu.name})` : `code of ${cpu.name}`;
}

/** The space whose memory holds guest-physical `gpa` in this VM: its own or a connected remote's. */
function physOwner(cpu: Cpu, gpa: number): Space | undefined {
  const w = Math.floor(gpa / WINDOW_SIZE);
  const m = w === cpu.space.window ? cpu.space : cpu.links.get(w)?.remote;
  return m !== undefined && !m.closed && gpa >= m.base && gpa + 8 <= m.memoryEnd ? m : undefined;
}

/**
 * Walk the active page tables for user address `va` as the CPU would for ring-3 code (Intel SDM
 * Vol. 3A §4.5, §4.6): present and user at every level, and writable at every level for a
 * write. The host address (owner and offset) of the page, or why not.
 */
function translate(cpu: Cpu, va: number, write: boolean): { owner: Space; offset: number } | string {
  let table = cpu.activeRoot();
  const idx = indices(va);
  const levels = [idx.pml4, idx.pdpt, idx.pd, idx.pt];
  for (let level = 0; level < 4; level++) {
    const owner = physOwner(cpu, table);
    if (owner === undefined) return "page tables outside the VM's memory";
    const e = owner.mem.dv.getBigUint64(table - owner.base + (levels[level] ?? 0) * 8, true);
    if (!(e & PTE.P)) return "not mapped";
    if (!(e & PTE.US)) return "supervisor-only";
    if (write && !(e & PTE.RW)) return "read-only";
    const addr = Number(e & ADDR_MASK);
    let page: number | undefined;
    if (level === 3) page = addr;
    else if (level === 2 && e & PTE.PS) page = addr - (addr % SPAN.PD) + (va % SPAN.PD) - (va % PAGE_SIZE);
    else if (level === 1 && e & PTE.PS) return "a 1 GiB page (never used by ipre)";
    if (page !== undefined) {
      const m = physOwner(cpu, page);
      if (m === undefined) return "outside the VM's memory";
      return { owner: m, offset: page - m.base + (va % PAGE_SIZE) };
    }
    table = addr;
  }
  return "not mapped";
}

/** A view of [address, address+length) as the code running on `cpu` may access it; GuestMemoryError otherwise. */
export function guestRange(cpu: Cpu, address: number, length: number, write: boolean): Uint8Array {
  const what = write ? "writable" : "readable";
  if (!(Number.isSafeInteger(address) && Number.isSafeInteger(length) && address >= 0 && length >= 0 && address + length <= USER_LIMIT)) {
    throw new GuestMemoryError(address, length, `${cpu.name}: guest range ${hex(address)}+${length} is not a user address range`);
  }
  if (length === 0) return new Uint8Array(0);
  let first: { owner: Space; offset: number } | undefined;
  for (let va = address; va < address + length; va = va - (va % PAGE_SIZE) + PAGE_SIZE) {
    const t = translate(cpu, va, write);
    if (typeof t === "string" || (first !== undefined && (t.owner !== first.owner || t.offset !== first.offset + (va - address)))) {
      let why = typeof t === "string" ? t : "not contiguous";
      const link = cpu.links.get(Math.floor(va / WINDOW_SIZE));
      if (link !== undefined && why === "not mapped") why += ` (the memory of ${link.remote.name}: its code may use it only inside a call, its callers only when it is loaned)`;
      throw new GuestMemoryError(address, length, `${cpu.name}: guest range ${hex(address)}+${length} is not ${what} by ${runningCode(cpu)}: ${hex(va)} is ${why}`);
    }
    first ??= t;
  }
  if (first === undefined) return new Uint8Array(0); // (length > 0: the loop ran)
  return first.owner.mem.u8.subarray(first.offset, first.offset + length);
}

/** A NUL-terminated string of at most maxLength bytes, read page by page with guestRange(). */
export function guestCString(cpu: Cpu, address: number, maxLength: number): string {
  const parts: Uint8Array[] = [];
  let n = 0;
  for (let va = address; n < maxLength; ) {
    const chunk = guestRange(cpu, va, Math.min(maxLength - n, PAGE_SIZE - (va % PAGE_SIZE)), false);
    const nul = chunk.indexOf(0);
    parts.push(chunk.subarray(0, nul < 0 ? chunk.length : nul));
    if (nul >= 0) break;
    n += chunk.length;
    va += chunk.length;
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return new TextDecoder().decode(out);
}
