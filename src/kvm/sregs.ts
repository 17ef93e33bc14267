/**
 * struct kvm_sregs / kvm_segment / kvm_dtable (linux/kvm.h, x86) as plain objects, with a codec
 * to and from the ioctl buffer. Segment values come from the GDT the machine writes
 * (src/x86/descriptors.ts `segmentFromGdt`), so they are defined once.
 */
import { DTABLE, SEGMENT, SREGS } from "./abi.ts";

/** struct kvm_segment. `limit` is the byte limit (granularity already applied). */
export interface KvmSegment {
  base: number;
  limit: number;
  selector: number;
  type: number;
  present: 0 | 1;
  dpl: number;
  db: 0 | 1;
  s: 0 | 1;
  l: 0 | 1;
  g: 0 | 1;
  avl: 0 | 1;
  unusable: 0 | 1;
}

/** struct kvm_dtable (GDTR/IDTR). */
export interface KvmDtable {
  base: number;
  limit: number;
}

/** struct kvm_sregs; control registers as bigint (CR0/CR4/EFER are bit sets, CR3/CR2 addresses). */
export interface KvmSregs {
  cs: KvmSegment;
  ds: KvmSegment;
  es: KvmSegment;
  fs: KvmSegment;
  gs: KvmSegment;
  ss: KvmSegment;
  tr: KvmSegment;
  ldt: KvmSegment;
  gdt: KvmDtable;
  idt: KvmDtable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** 256 bits of pending external interrupts, as four u64 words (left as KVM reports them). */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

const SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const bit = (v: number): 0 | 1 => (v ? 1 : 0);

function decodeSegment(dv: DataView, off: number): KvmSegment {
  return {
    base: Number(dv.getBigUint64(off + SEGMENT.base, true)),
    limit: dv.getUint32(off + SEGMENT.limit, true),
    selector: dv.getUint16(off + SEGMENT.selector, true),
    type: dv.getUint8(off + SEGMENT.type),
    present: bit(dv.getUint8(off + SEGMENT.present)),
    dpl: dv.getUint8(off + SEGMENT.dpl),
    db: bit(dv.getUint8(off + SEGMENT.db)),
    s: bit(dv.getUint8(off + SEGMENT.s)),
    l: bit(dv.getUint8(off + SEGMENT.l)),
    g: bit(dv.getUint8(off + SEGMENT.g)),
    avl: bit(dv.getUint8(off + SEGMENT.avl)),
    unusable: bit(dv.getUint8(off + SEGMENT.unusable)),
  };
}

function encodeSegment(dv: DataView, off: number, s: KvmSegment): void {
  dv.setBigUint64(off + SEGMENT.base, BigInt(s.base), true);
  dv.setUint32(off + SEGMENT.limit, s.limit >>> 0, true);
  dv.setUint16(off + SEGMENT.selector, s.selector, true);
  dv.setUint8(off + SEGMENT.type, s.type);
  dv.setUint8(off + SEGMENT.present, s.present);
  dv.setUint8(off + SEGMENT.dpl, s.dpl);
  dv.setUint8(off + SEGMENT.db, s.db);
  dv.setUint8(off + SEGMENT.s, s.s);
  dv.setUint8(off + SEGMENT.l, s.l);
  dv.setUint8(off + SEGMENT.g, s.g);
  dv.setUint8(off + SEGMENT.avl, s.avl);
  dv.setUint8(off + SEGMENT.unusable, s.unusable);
}

export function decodeSregs(dv: DataView): KvmSregs {
  const seg = Object.fromEntries(SEGMENTS.map((n) => [n, decodeSegment(dv, SREGS[n])])) as Record<(typeof SEGMENTS)[number], KvmSegment>;
  const dt = (off: number): KvmDtable => ({ base: Number(dv.getBigUint64(off + DTABLE.base, true)), limit: dv.getUint16(off + DTABLE.limit, true) });
  const u64 = (off: number) => dv.getBigUint64(off, true);
  return {
    ...seg,
    gdt: dt(SREGS.gdt),
    idt: dt(SREGS.idt),
    cr0: u64(SREGS.cr0),
    cr2: u64(SREGS.cr2),
    cr3: u64(SREGS.cr3),
    cr4: u64(SREGS.cr4),
    cr8: u64(SREGS.cr8),
    efer: u64(SREGS.efer),
    apicBase: u64(SREGS.apic_base),
    interruptBitmap: [0, 1, 2, 3].map((i) => u64(SREGS.interrupt_bitmap + i * 8)) as [bigint, bigint, bigint, bigint],
  };
}

export function encodeSregs(dv: DataView, s: KvmSregs): void {
  for (const n of SEGMENTS) encodeSegment(dv, SREGS[n], s[n]);
  for (const [off, t] of [[SREGS.gdt, s.gdt], [SREGS.idt, s.idt]] as const) {
    dv.setBigUint64(off + DTABLE.base, BigInt(t.base), true);
    dv.setUint16(off + DTABLE.limit, t.limit, true);
  }
  const u64 = (off: number, v: bigint) => dv.setBigUint64(off, BigInt.asUintN(64, v), true);
  u64(SREGS.cr0, s.cr0);
  u64(SREGS.cr2, s.cr2);
  u64(SREGS.cr3, s.cr3);
  u64(SREGS.cr4, s.cr4);
  u64(SREGS.cr8, s.cr8);
  u64(SREGS.efer, s.efer);
  u64(SREGS.apic_base, s.apicBase);
  s.interruptBitmap.forEach((w, i) => u64(SREGS.interrupt_bitmap + i * 8, w));
}

/**
 * The kvm_segment that loading `selector` from `gdt` would give (Intel SDM Vol. 3A §3.4.5): the
 * registers are derived from the descriptors the guest sees, never written twice (Firecracker's
 * `kvm_segment_from_gdt`). A system descriptor (S = 0: TSS, LDT) is 16 bytes in long mode and
 * carries base[63:32] in its second half.
 */
export function segmentFromGdt(gdt: Uint8Array, selector: number): KvmSegment {
  const index = selector >> 3;
  const dv = new DataView(gdt.buffer, gdt.byteOffset, gdt.byteLength);
  if ((index + 1) * 8 > gdt.byteLength) throw new RangeError(`selector 0x${selector.toString(16)} is beyond the GDT (${gdt.byteLength} bytes)`);
  const lo = dv.getUint32(index * 8, true);
  const hi = dv.getUint32(index * 8 + 4, true);
  const s = bit((hi >>> 12) & 1);
  let base = ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0;
  if (!s) {
    if ((index + 2) * 8 > gdt.byteLength) throw new RangeError(`system descriptor 0x${selector.toString(16)} needs 16 bytes`);
    base += dv.getUint32(index * 8 + 8, true) * 2 ** 32;
  }
  const g = bit((hi >>> 23) & 1);
  const rawLimit = (lo & 0xffff) | (hi & 0xf0000);
  return {
    base,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    selector,
    type: (hi >>> 8) & 0xf,
    present: bit((hi >>> 15) & 1),
    dpl: (hi >>> 13) & 3,
    db: bit((hi >>> 22) & 1),
    s,
    l: bit((hi >>> 21) & 1),
    g,
    avl: bit((hi >>> 20) & 1),
    unusable: 0,
  };
}
