/**
 * Page-table memory for the paging properties and a software page walk that reads the tables
 * the way the CPU does (Intel SDM Vol. 3A §4.5, 4-level paging with EFER.NXE = 1).
 */
import { ADDR_MASK, type PtMemory, PTE } from "../../src/x86/paging.ts";

/**
 * A PtMemory over an ArrayBuffer that covers guest-physical [origin, origin + size), with the
 * BigInt-free write64Parts fast path. An access outside it is a bug in the code under test.
 */
export class ArrayPtMemory implements PtMemory {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  /** With `log`, every write64 / write64Parts as [gpa, value before]. */
  writes: [number, bigint][] | undefined;
  constructor(public origin: number, readonly size: number, log = false) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
    this.writes = log ? [] : undefined;
  }
  /** Zeroed again, now at `origin`: one memory serves many cases (allocating 1 MiB costs more than a case). */
  reset(origin: number, log = false): this {
    this.bytes.fill(0);
    this.origin = origin;
    this.writes = log ? [] : undefined;
    return this;
  }
  #at(gpa: number): number {
    const off = gpa - this.origin;
    if (!(Number.isInteger(off) && off >= 0 && off + 8 <= this.size && off % 8 === 0)) {
      throw new Error(`page-table access at 0x${gpa.toString(16)} outside [0x${this.origin.toString(16)}, +0x${this.size.toString(16)})`);
    }
    return off;
  }
  read64(gpa: number): bigint {
    return this.#view.getBigUint64(this.#at(gpa), true);
  }
  write64(gpa: number, value: bigint): void {
    const off = this.#at(gpa);
    this.writes?.push([gpa, this.#view.getBigUint64(off, true)]);
    this.#view.setBigUint64(off, value, true);
  }
  write64Parts(gpa: number, lo: number, hi: number): void {
    const off = this.#at(gpa);
    this.writes?.push([gpa, this.#view.getBigUint64(off, true)]);
    this.#view.setUint32(off, lo, true);
    this.#view.setUint32(off + 4, hi, true);
  }
}

/** A PtMemory over a Map, without the fast path: every entry goes through userPte()'s BigInt encoding. */
export function mapPtMemory(): PtMemory & { entries: Map<number, bigint> } {
  const entries = new Map<number, bigint>();
  return { entries, read64: (gpa) => entries.get(gpa) ?? 0n, write64: (gpa, v) => void entries.set(gpa, v) };
}

export type Walk =
  | { present: false; level: "PML4" | "PDPT" | "PD" | "PT" }
  | { present: true; phys: number; pageSize: number; user: boolean; write: boolean; exec: boolean };

const LEVELS = [["PML4", 39], ["PDPT", 30], ["PD", 21], ["PT", 12]] as const;

/** Translate `va` from the root (CR3) `pml4`: the CPU's view of the tables. */
export function walk(mem: PtMemory, pml4: number, va: number): Walk {
  const v = BigInt(va);
  let table = BigInt(pml4);
  let user = true, write = true, exec = true;
  for (const [level, shift] of LEVELS) {
    const e = mem.read64(Number(table + ((v >> BigInt(shift)) & 511n) * 8n));
    if (!(e & PTE.P)) return { present: false, level };
    // Access rights are the AND of RW and U/S and the OR of XD over all levels (SDM §4.6.1).
    user &&= (e & PTE.US) !== 0n;
    write &&= (e & PTE.RW) !== 0n;
    exec &&= (e & PTE.NX) === 0n;
    const leaf = level === "PT" || ((level === "PD" || level === "PDPT") && (e & PTE.PS) !== 0n);
    if (leaf) {
      const pageSize = 1n << BigInt(shift);
      const frame = e & ADDR_MASK & ~(pageSize - 1n);
      return { present: true, phys: Number(frame | (v & (pageSize - 1n))), pageSize: Number(pageSize), user, write, exec };
    }
    table = e & ADDR_MASK;
  }
  throw new Error("unreachable");
}
