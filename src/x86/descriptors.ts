/**
 * GDT, TSS and IDT builders (Intel SDM Vol. 3A §3.4.5 segment descriptors, §7.2.3 64-bit TSS
 * descriptor, §7.7 64-bit TSS, §6.14.1 64-bit IDT gates). Pure functions over Uint8Array.
 */

/** Selectors of the fixed GDT. User data sits before user code as SYSRET/MSR_STAR require. */
/** The exception vectors ipre names (Intel SDM Vol. 3A §6.15): #DF, #GP, #PF. */
export const VECTOR = { DF: 8, GP: 13, PF: 14 } as const;

export const SELECTOR = {
  KERNEL_CODE: 0x08,
  KERNEL_DATA: 0x10,
  USER_DATA: 0x18 | 3,
  USER_CODE: 0x20 | 3,
  TSS: 0x28,
} as const;

export const GDT_ENTRIES = 7; // null, kcode, kdata, udata, ucode, tss (2 slots)
export const GDT_LIMIT = GDT_ENTRIES * 8 - 1;

export interface SegmentSpec {
  base?: number;
  limit?: number;
  /** 4-bit type field: code 0xA/0xB (execute/read), data 0x2/0x3 (read/write), TSS 0x9. */
  type: number;
  /** 1 for code/data, 0 for system segments. */
  s: 0 | 1;
  dpl: 0 | 1 | 2 | 3;
  /** 64-bit code segment. */
  l?: 0 | 1;
  /** Default operand size 32-bit (must be 0 when l=1). */
  db?: 0 | 1;
  /** Limit in 4 KiB units. */
  g?: 0 | 1;
}

/**
 * `value` checked to fit a `bits`-wide field. Truncating it instead would silently describe
 * another segment or gate (a base above 4 GiB, IST 8 = no stack switch at all).
 */
function field(name: string, value: number, bits: number): number {
  if (!(Number.isInteger(value) && value >= 0 && value < 2 ** bits)) throw new RangeError(`${name} ${value} does not fit in ${bits} bits`);
  return value;
}

/** `value` checked to be an address the builders can split exactly: a safe non-negative integer. */
function address(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new RangeError(`${name} ${value} is not an address (a safe non-negative integer)`);
  return value;
}

/** Encode one 8-byte segment descriptor as [low32, high32]. Throws RangeError for a field that does not fit. */
export function segmentDescriptor(spec: SegmentSpec): [number, number] {
  const base = field("base", spec.base ?? 0, 32);
  const limit = field("limit", spec.limit ?? 0xfffff, 20);
  const l = field("L", spec.l ?? 0, 1), db = field("D/B", spec.db ?? 0, 1);
  // SDM Vol. 3A §3.4.5: with L set, D must be clear (L = D = 1 is reserved).
  if (l && db) throw new RangeError("a 64-bit code segment (L=1) must have D/B=0");
  const low = ((base & 0xffff) << 16) | (limit & 0xffff);
  const high =
    ((base >>> 16) & 0xff) |
    (field("type", spec.type, 4) << 8) |
    (field("S", spec.s, 1) << 12) |
    (field("DPL", spec.dpl, 2) << 13) |
    (1 << 15) | // present
    (((limit >>> 16) & 0xf) << 16) |
    (l << 21) |
    (db << 22) |
    (field("G", spec.g ?? 1, 1) << 23) |
    (((base >>> 24) & 0xff) << 24);
  return [low >>> 0, high >>> 0];
}

/** The 64-bit TSS without an I/O permission bitmap. */
export const TSS_SIZE = 104;
/** Bytes of the largest I/O permission bitmap: one bit per port 0..0xffff, plus the final 0xff byte. */
const IO_BITMAP_MAX = 0x10000 / 8 + 1;


/** The GDT of every ipre machine, with the TSS at `tssBase`, `tssSize` bytes long (buildTss's length). */
export function buildGdt(tssBase: number, tssSize = TSS_SIZE): Uint8Array {
  address("TSS base", tssBase);
  if (!(Number.isInteger(tssSize) && tssSize >= TSS_SIZE && tssSize <= TSS_SIZE + IO_BITMAP_MAX)) throw new RangeError(`TSS size ${tssSize} is not ${TSS_SIZE}..${TSS_SIZE + IO_BITMAP_MAX}`);
  const gdt = new Uint8Array(GDT_ENTRIES * 8);
  const dv = new DataView(gdt.buffer);
  const put = (index: number, [lo, hi]: [number, number]) => {
    dv.setUint32(index * 8, lo, true);
    dv.setUint32(index * 8 + 4, hi, true);
  };
  put(SELECTOR.KERNEL_CODE >> 3, segmentDescriptor({ type: 0xb, s: 1, dpl: 0, l: 1 }));
  put(SELECTOR.KERNEL_DATA >> 3, segmentDescriptor({ type: 0x3, s: 1, dpl: 0, db: 1 }));
  put(SELECTOR.USER_DATA >> 3, segmentDescriptor({ type: 0x3, s: 1, dpl: 3, db: 1 }));
  put(SELECTOR.USER_CODE >> 3, segmentDescriptor({ type: 0xb, s: 1, dpl: 3, l: 1 }));
  // 64-bit TSS descriptor: 16 bytes, type 9 (available), byte granularity.
  put(SELECTOR.TSS >> 3, segmentDescriptor({ base: tssBase % 2 ** 32, limit: tssSize - 1, type: 0x9, s: 0, dpl: 0, g: 0 }));
  dv.setUint32((SELECTOR.TSS >> 3) * 8 + 8, Math.floor(tssBase / 2 ** 32), true);
  return gdt;
}

/**
 * MSR_STAR consistent with the GDT: kernel CS in [47:32]; user SS = [63:48]+8 and user CS =
 * [63:48]+16 (SYSRET). PVM derives the user selectors of its own transitions from it (docs/ARCHITECTURE.md §5).
 */
export function starMsr(): bigint {
  const sysretBase = BigInt(SELECTOR.USER_DATA & ~3) - 8n;
  return (sysretBase << 48n) | (BigInt(SELECTOR.KERNEL_CODE) << 32n);
}

export interface TssSpec {
  rsp0: number;
  /** ist[1..7]; index 0 unused. */
  ist: number[];
  /**
   * Ports that ring-3 code may use with IOPL 0 (Intel SDM Vol. 1 §19.5.2, the I/O permission
   * bitmap); every other port raises #GP. Default none (no bitmap).
   */
  ioPorts?: readonly number[];
}

/**
 * 64-bit TSS: RSP0 at 4, IST1..7 at 36.., and the I/O map base at 102. Without `ioPorts` the map
 * base lies past the limit (no bitmap: every port is refused to ring 3); with them, a bitmap at
 * 104 up to the byte of the highest port, every bit set but theirs, then a 0xff byte (the CPU
 * reads two bytes per check). The TSS descriptor's limit must be the result's length - 1.
 */
export function buildTss(spec: TssSpec): Uint8Array {
  if (spec.ist.length > 8 || (spec.ist[0] ?? 0) !== 0) throw new RangeError("ist holds IST1..7 at indices 1..7; index 0 is unused");
  const ports = spec.ioPorts ?? [];
  for (const p of ports) field("I/O port", p, 16);
  const bitmap = ports.length === 0 ? 0 : Math.floor(Math.max(...ports) / 8) + 2;
  const tss = new Uint8Array(TSS_SIZE + bitmap);
  tss.fill(0xff, TSS_SIZE);
  for (const p of ports) {
    const i = TSS_SIZE + (p >> 3);
    tss[i] = (tss[i] ?? 0xff) & ~(1 << (p & 7));
  }
  const dv = new DataView(tss.buffer);
  const put64 = (off: number, v: number) => {
    dv.setUint32(off, v % 2 ** 32, true);
    dv.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
  };
  put64(4, address("RSP0", spec.rsp0));
  for (let i = 1; i <= 7; i++) put64(36 + (i - 1) * 8, address(`IST${i}`, spec.ist[i] ?? 0));
  dv.setUint16(102, TSS_SIZE, true);
  return tss;
}

export interface GateSpec {
  offset: number;
  selector?: number;
  /** IST index 0..7 (0 = no stack switch unless the privilege level changes). */
  ist: number;
  dpl?: 0 | 3;
  /** 0xE interrupt gate (IF cleared), 0xF trap gate. */
  type?: 0xe | 0xf;
}

/** One 16-byte 64-bit IDT gate. Throws RangeError for a field it cannot encode. */
export function idtGate(spec: GateSpec): Uint8Array {
  const type = spec.type ?? 0xe;
  if (type !== 0xe && type !== 0xf) throw new RangeError(`gate type ${type} is neither an interrupt (0xE) nor a trap gate (0xF)`);
  const g = new Uint8Array(16);
  const dv = new DataView(g.buffer);
  const off = address("gate offset", spec.offset);
  dv.setUint16(0, off & 0xffff, true);
  dv.setUint16(2, field("selector", spec.selector ?? SELECTOR.KERNEL_CODE, 16), true);
  dv.setUint8(4, field("IST index", spec.ist, 3));
  dv.setUint8(5, 0x80 | (field("DPL", spec.dpl ?? 0, 2) << 5) | type);
  dv.setUint16(6, Math.floor(off / 0x10000) & 0xffff, true);
  dv.setUint32(8, Math.floor(off / 2 ** 32), true);
  return g;
}

/** An IDT of `count` gates (at most 256 vectors) built from `gate(vector)`. */
export function buildIdt(count: number, gate: (vector: number) => GateSpec): Uint8Array {
  if (!(Number.isInteger(count) && count >= 0 && count <= 256)) throw new RangeError(`an IDT has 0..256 gates, not ${count}`);
  const idt = new Uint8Array(count * 16);
  for (let v = 0; v < count; v++) idt.set(idtGate(gate(v)), v * 16);
  return idt;
}
